"""Stage 8, the web service and its page."""
