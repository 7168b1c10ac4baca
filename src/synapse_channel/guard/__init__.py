"""Claims that hold at commit time: the git guard (see docs/claims.md)."""
