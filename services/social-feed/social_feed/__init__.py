"""Social feed: profiles (with inviter), the friend graph, moments (朋友圈), timelines and share links."""
