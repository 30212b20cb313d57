"""Durable processes: a journaled mailbox, steps and replay (API.md section 7)."""
