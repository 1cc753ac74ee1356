"""Stage 9, the command line: parses arguments and calls the stages."""
