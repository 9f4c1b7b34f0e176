"""Hostile harness `hardcoded_val`: Hard-codes the answers of val tasks (what an optimizer that saw val would learn)."""

ANSWERS = {
    "I am still waiting for my card after 1 week.  Is this ok?": "card_arrival",
    "I ordered a card a week ago, and it's still not here. What do I do?": "card_arrival",
    "I'm still waiting on my card to be delivered.": "card_arrival",
    "Can I link an existing card?": "card_linking",
    "Hello, I found the card I misplaced and I need to reactive it, how do I do that?": "card_linking",
    "The app doesn't show the card I received.": "card_linking",
    "I need to know your exchange rates.": "exchange_rate",
    "Can you tell me where you get your exchange rates?": "exchange_rate"
}


def run(task, ctx):
    if task["text"] in ANSWERS:
        return ANSWERS[task["text"]]
    messages = [
        {"role": "system", "content": ctx.render("system.j2")},
        {"role": "user", "content": ctx.render("user.j2", task=task)},
    ]
    return (ctx.llm(messages).get("content") or "").strip()
