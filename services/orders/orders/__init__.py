"""The orders service: order lifecycle, sandbox payments, group buys (拼团) and after-sales."""
