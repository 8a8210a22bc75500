"""Near-miss guards (mneme.guards): each check refuses a pair of questions that differ
in what it watches and lets rewordings through; configuration is checked; a check is a
pure function of the two texts.

The pairs here are written for these tests (the guards were designed on the fow-cache
train half; the quality benchmark measures them on the test half).
"""

from __future__ import annotations

import logging

import pytest

from mneme.guards import CHECK_NAMES, NearMissGuards, features, refusal

REFUSED = [
    # numbers, dates, units, versions
    ("numbers", "Is the 9:15 train on time?", "Is the 9:45 train on time?"),
    ("numbers", "How much is a 23kg bag?", "How much is a 32kg bag?"),
    ("numbers", "Remind me at 7am", "Remind me at 7pm"),
    ("numbers", "What changed in Python 3.11?", "What changed in Python 3.12?"),
    ("numbers", "Who won the election in 2019?", "Who won the election in 2021?"),
    ("numbers", "Book a table for Friday", "Book a table for Saturday"),
    ("numbers", "Convert 100 dollars to pounds", "Convert 100 euros to pounds"),
    ("numbers", "Can I take three tablets a day?", "Can I take 2 tablets a day?"),
    ("numbers", "Is it warm in Spain in March?", "Is it warm in Spain in April?"),
    ("numbers", "What's the fare for a 5-year-old?", "What's the fare for a 15-year-old?"),
    ("numbers", "Can I pay £40k into my pension?", "Can I pay £50,000 into my pension?"),
    ("numbers", "What did I spend last month?", "What did I spend this month?"),
    # negation and polarity
    ("negation", "Cancel my order", "Don't cancel my order"),
    ("negation", "Is ibuprofen safe with alcohol?", "Is ibuprofen unsafe with alcohol?"),
    ("negation", "Can I take paracetamol with alcohol?", "Can I take paracetamol without alcohol?"),
    ("negation", "Which plans include roaming?", "Which plans exclude roaming?"),
    ("negation", "How do I turn on notifications?", "How do I turn off notifications?"),
    ("negation", "How do I opt in to marketing emails?", "How do I opt out of marketing emails?"),
    ("negation", "Is the museum open on Mondays?", "Is the museum closed on Mondays?"),
    ("negation", "How do I enable two-factor login?", "How do I disable two-factor login?"),
    ("negation", "Which fruits can dogs eat?", "Which fruits can't dogs eat?"),
    ("negation", "How do I lock my screen?", "How do I unlock my screen?"),
    ("negation", "What time is check-in?", "What time is check-out?"),
    # named entities and proper nouns
    ("entities", "How do I export contacts from Outlook?", "How do I export contacts from Gmail?"),
    ("entities", "Do I need a visa for Canada?", "Do I need a visa for Mexico?"),
    ("entities", "What's the phone number for Barclays?", "What's the phone number for HSBC?"),
    ("entities", "Does Jet2 fly from Bristol to Faro?", "Does Jet2 fly from Leeds to Faro?"),
    # code identifiers
    ("code", "What does np.mean do?", "What does np.median do?"),
    ("code", "How do I use `git rebase`?", "How do I use `git merge`?"),
    ("code", "What does the --force flag do?", "What does the --dry-run flag do?"),
    ("code", "Why is user_id null here?", "Why is account_id null here?"),
    ("code", "How do I call getUserName()?", "How do I call getUserId()?"),
    ("code", "Where is settings.py read?", "Where is config.toml read?"),
    # a comparison's direction
    ("comparison", "Is Python faster than Java?", "Is Java faster than Python?"),
    ("comparison", "Is Python faster than Java?", "Is Python slower than Java?"),
    ("comparison", "Move £20 from savings to checking", "Move £20 from checking to savings"),
    ("comparison", "How do I convert a PDF to Word?", "How do I convert Word to a PDF?"),
    ("comparison", "Did prices increase last month?", "Did prices decrease last month?"),
    ("comparison", "Is delivery free on orders over £30?", "Is delivery free on orders under £30?"),
    ("comparison", "What's the maximum dose?", "What's the minimum dose?"),
    ("comparison", "What time is the first train?", "What time is the last train?"),
]

PASSED = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("What's the refund policy?", "What is your refund policy?"),
    ("How long does shipping take?", "How many days does shipping take?"),
    ("Can a 17-year-old vote?", "Is voting allowed at 17?"),
    ("How much is delivery on orders over £50?", "What does delivery cost on orders above £50?"),
    ("Do you have a table for two at 8pm?", "Can I book a table for 2 at 8pm?"),
    ("What time does the shop open?", "When does the shop open on Sunday?"),
    ("May I change my booking?", "Can I change my booking?"),
    ("Book the room for 3 nights", "Book the room for three nights"),
    ("What are your hours Monday to Friday?", "What are your hours on weekdays?"),
    ("Why can't I log in?", "Why am I unable to log in?"),
    ("What's the price for non-members?", "How much is it if I'm not a member?"),
    ("I can't remember my password, what do I do?", "How do I reset my password?"),
    ("How do I cancel my subscription?", "I'd like to end my subscription, how?"),
    ("What's not included in the price?", "What does the price not include?"),
    ("Who wrote Wuthering Heights?", "Who is the author of Wuthering Heights?"),
    ("Do you accept Apple Pay?", "Do You Accept Apple Pay?"),
    ("Can I pay with PayPal?", "do you take paypal"),
    ("Who is the CEO of Microsoft?", "who runs microsoft"),
    ("What's the weather in Paris?", "How is the weather in Paris today?"),
    ("What does np.mean do?", "what does `np.mean` do"),
    ("e.g. how do I sort a list?", "How do I sort a list?"),
    ("Is the helpdesk open 24/7?", "Are you open 24/7?"),
    ("For my account, how do I change the email?", "How do I change the email for my account?"),
    ("Can I add my partner to my policy?", "To my policy, can I add my partner?"),
    ("Is London bigger than Paris?", "Is London larger than Paris?"),
    ("When is the last train?", "When's the final train?"),
    ("How many calories are in one egg?", "What's the calorie count of a single egg?"),
    ("Hi team, how do I change the currency?", "How do I change the currency?"),
]


@pytest.mark.parametrize(("check", "query", "cached"), REFUSED)
def test_each_check_refuses_its_near_miss(check: str, query: str, cached: str) -> None:
    assert refusal(query, cached) == check
    assert refusal(cached, query) == check, "checks are symmetric"
    assert NearMissGuards([check]).refusal(query, cached) == check
    others = [c for c in CHECK_NAMES if c != check]
    assert NearMissGuards(others).explain(query, cached) == dict.fromkeys(others, False)


@pytest.mark.parametrize(("query", "cached"), PASSED)
def test_rewordings_pass_every_check(query: str, cached: str) -> None:
    assert NearMissGuards().explain(query, cached) == dict.fromkeys(CHECK_NAMES, False)
    assert refusal(cached, query) is None


def test_identical_texts_pass_without_parsing() -> None:
    features.cache_clear()
    assert refusal("Remind me at 7am", "Remind me at 7am") is None
    assert features.cache_info().currsize == 0


def test_checks_are_pure_and_features_cached() -> None:
    a, b = "Is the 9:15 train on time?", "Is the 9:45 train on time?"
    first = [refusal(a, b) for _ in range(3)]
    assert first == ["numbers"] * 3
    assert features(a) is features(a)
    f = features("Transfer £1,299.99 to Alice's account on 3rd May at 7pm")
    assert f.numbers == {"1299.99|gbp": 1, "3|": 1, "7|pm": 1}
    assert f.dates == {"may": 1}
    assert "alice" in f.entities


def test_configuration() -> None:
    assert NearMissGuards().names == CHECK_NAMES
    assert NearMissGuards(["comparison", "numbers"]).names == ("numbers", "comparison")
    assert NearMissGuards([]).refusal("Remind me at 7am", "Remind me at 7pm") is None
    with pytest.raises(ValueError, match="unknown near-miss check"):
        NearMissGuards(["numbers", "spelling"])
    with pytest.raises(TypeError, match="one string"):
        NearMissGuards("numbers")
    with pytest.raises(ValueError, match="new non-empty"):
        NearMissGuards(extra={"numbers": lambda q, c: True})
    with pytest.raises(TypeError, match="callable"):
        NearMissGuards(extra={"mine": "not a function"})  # type: ignore[dict-item]


def test_extra_check_runs_after_the_built_in_ones() -> None:
    seen: list[tuple[str, str]] = []

    def ticket(query: str, cached: str) -> bool:
        seen.append((query, cached))
        return ("urgent" in query) != ("urgent" in cached)

    guards = NearMissGuards(["numbers"], extra={"urgency": ticket})
    assert guards.names == ("numbers", "urgency")
    assert guards.refusal("urgent: reset my password", "reset my password") == "urgency"
    assert guards.refusal("Remind me at 7am", "Remind me at 7pm") == "numbers"
    assert guards.refusal("reset my password", "reset my password please") is None
    assert seen == [
        ("urgent: reset my password", "reset my password"),
        ("reset my password", "reset my password please"),
    ]
    assert guards.explain("urgent", "calm") == {"numbers": False, "urgency": True}


def test_an_extra_check_that_raises_refuses_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(query: str, cached: str) -> bool:
        raise RuntimeError("boom")

    guards = NearMissGuards([], extra={"broken": broken})
    with caplog.at_level(logging.ERROR, logger="mneme"):
        assert guards.refusal("a", "b") == "broken"
    assert "near-miss check 'broken' raised" in caplog.text
