"""The Trio shell: tasks and channels that move bytes, time and events to the machines."""
