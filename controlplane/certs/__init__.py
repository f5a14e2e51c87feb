"""Certificates: the self-signed default now; certbot-issued brand certificates later."""
