"""Stateful sans-I/O protocol machines.

Every input carries ``now`` (seconds on the caller's clock). Machines expose
``get_timer()`` (earliest deadline or None) and ``handle_timer(now)``; they never
read a clock, draw random numbers of their own or do I/O.
"""
