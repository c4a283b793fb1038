"""i2p_registration."""
