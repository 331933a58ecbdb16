"""Decorators that write a task's boilerplate from declared input and output modes."""
