"""Identity: identify an anonymous customer, merge two customers, and undo a merge."""
