"""Token buckets per client IP and per signed-in user (per gateway process; with N replicas the cluster
allows up to N × the rate, which the configured rates account for)."""
import math
import time

from gateway.errors import RateLimited


class TokenBuckets:
    def __init__(self, rate, burst, max_keys=100_000):
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self.buckets = {}

    def take(self, key, now):
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return math.ceil((1 - tokens) / self.rate)
        if len(self.buckets) >= self.max_keys and key not in self.buckets:
            self.buckets.clear()  # bounded memory under a flood of new keys
        self.buckets[key] = (tokens - 1, now)
        return 0


class RateLimiter:
    def __init__(self, ip_rate, ip_burst, user_rate, user_burst):
        self.by_ip = TokenBuckets(ip_rate, ip_burst)
        self.by_user = TokenBuckets(user_rate, user_burst)

    @classmethod
    def from_settings(cls, settings):
        """RATE_LIMIT_* from kit.config's Settings (validated at start)."""
        return cls(settings.rate_limit_ip_per_sec, settings.rate_limit_ip_burst,
                   settings.rate_limit_user_per_sec, settings.rate_limit_user_burst)

    def check(self, ip, user_id, now=None):
        now = time.monotonic() if now is None else now
        wait = self.by_user.take(user_id, now) if user_id else 0
        wait = wait or self.by_ip.take(ip or "-", now)
        if wait:
            raise RateLimited(wait)
