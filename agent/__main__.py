from agent.app import main

main()
