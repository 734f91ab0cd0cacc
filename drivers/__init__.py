"""Drivers: how agents are started, stopped and watched on each kind of compute resource.

A driver never imports the supervisor: the supervisor hands it a `DriverHost` for the few
things a driver must report back (an agent died), and asks it for everything else.
"""
