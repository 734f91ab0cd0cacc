import sys

from jobvisor.cli.main import main

sys.exit(main())
