"""Privacy requests: delete, suppress, unsuppress and export a person's data."""
