"""Protocol clients for probing a deployed tracker from outside (BEP 3 HTTP, BEP 15 UDP)."""
