"""The cluster layer: internode messaging, gossip membership and phi-accrual failure detection."""
