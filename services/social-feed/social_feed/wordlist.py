"""The blocked-word list (BLOCKED_WORDS_FILE, validated by kit.config), read once when the service starts and
injected as {normalised entry: entry as written}; the matching rules are domain.check_blocked_words."""
from nameko.extensions import DependencyProvider

from kit.config import load_settings
from social_feed.domain import parse_blocked_words


class BlockedWords(DependencyProvider):
    def setup(self):
        with open(load_settings().blocked_words_file, encoding="utf-8") as handle:
            self.words = parse_blocked_words(handle)

    def get_dependency(self, worker_ctx):
        return self.words
