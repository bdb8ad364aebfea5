"""Serving finished cls runs (``llamafactory-cli api`` with a cls recipe): vLLM's ``/classify`` schema, several
adapter runs on one copy of their base model, batched requests with a bounded queue."""
