"""The supervisor: a Tornado app that owns every job's state and routes ops to agents."""
