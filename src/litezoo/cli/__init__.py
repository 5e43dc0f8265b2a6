"""The command line: the only place that parses arguments, prints for people and chooses exit codes."""
