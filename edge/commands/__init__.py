"""Requests to structured commands: command sets, the number normaliser, the grammar that keeps every
output valid, and the model that maps a request to one command."""
