//! VRRP v2/v3: wire codec, sans-IO election state machine, VIP mover.
