"""Alert webhooks: the outbox written with rule state, and its delivery."""
