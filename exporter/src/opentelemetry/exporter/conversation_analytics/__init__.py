"""Conversation analytics exporter."""
