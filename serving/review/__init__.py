"""The review queue: scored items with their listing metadata, investigators' decisions, sellers and
case files, and the confirmed labels that go back into training (``docs/review.md``)."""
