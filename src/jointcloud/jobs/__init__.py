"""Background jobs behind one worker protocol (DESIGN §4): repair, scrub,
GC, health, redundancy change, drain and, later, sync tasks."""
