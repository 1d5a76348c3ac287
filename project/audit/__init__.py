"""The audit trail: who changed which configuration, when, from what to what.

Written explicitly by the services (audit_record), never by model signals or
database triggers: see docs/operations.md, "Audit trail", for why.
"""
