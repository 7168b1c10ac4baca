"""Human payload strings the hub puts in refusal and receipt frames.

Kept in one place so the wording stays consistent and tests can match it.
"""

CONFLICT = "Name '{name}' is already online from another session. Use a unique --name."
RESERVED = "Name '{name}' is reserved by the hub. Use a different --name."
DELIVERED = "delivered to {names}"
UNDELIVERED = "delivery failed: no online recipient matched {target}"
QUEUED = "queued for {target}: no seat is waiting, but {holder} holds the project; the next wait gets it"
AUTH_REQUIRED = "Authentication token required."
AUTH_INVALID = "Invalid authentication token."
