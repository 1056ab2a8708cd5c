"""Support tickets → urgent | billing | technical | general, generated from a seed.

The label rule (the same one the handwritten file follows):

1. **urgent** beats everything: the service is down or unusable for a team or its customers,
   a security problem (account takeover, unknown admins or keys, leaked data), data loss, or a
   legal/money deadline within hours (today). Whatever the topic or the tone.
2. Otherwise the topic of the main request decides: **billing** = what the customer is charged,
   refunded or invoiced, payment methods, plan changes; **technical** = the product misbehaves
   or will not install/connect/log in (even on a billing page, or a feature that makes invoices);
   **general** = questions, feedback, account admin, policies, everything else.
3. An actionable problem beats an aside: a billing/technical problem plus a general question is
   billing/technical; an error mentioned in passing ("it fixed itself") does not make it technical.
4. Tone, capitals, "!!!" and the word "urgent" never decide: a furious overcharge is billing,
   a polite outage is urgent, "URGENT: dark mode resets" is technical.

About 30% of each label is a hard case built to break keyword matching (scenario names start
with ``hard_``). Text comes from a small template grammar: ``[a|b|c]`` picks one alternative,
``{slot}`` draws a filler (product, error, amount, time, ...), then a random opening, context,
tone, aside, closing, signature, casing and typos wrap the core sentence.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Callable

from harness.tasks.base import Example, example, normalize

LABELS = ("urgent", "billing", "technical", "general")
INSTRUCTION = (
    "Classify this support ticket as urgent, billing, technical or general. Reply with the label only."
)
_TICKET_SEP = "Ticket: "
HANDWRITTEN_FILE = "tickets_handwritten.jsonl"


def make_prompt(text: str) -> list[dict]:
    """The prompt every tickets example uses (generated, handwritten, DPO pairs).

    The instruction is the system turn: it replaces chat templates' default system prompt
    (SmolLM2's adds ~20 tokens), which cuts a training example from ~86 to ~62 tokens.
    """
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": f"{_TICKET_SEP}{text}"}]


def ticket_text(prompt_content: str) -> str:
    """Inverse of ``make_prompt``: the ticket text inside a user message."""
    return prompt_content.split(_TICKET_SEP, 1)[1]


def first_label(generation: str) -> str:
    """First word of the first line, lower-cased, punctuation stripped; "Label: x" counts as x."""
    words = re.findall(r"[a-z]+", normalize(generation))
    if len(words) > 1 and words[0] in ("label", "category"):
        words = words[1:]
    return words[0] if words else ""


# ---------------------------------------------------------------- slot fillers
def _pick(*options: str) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(options)


def _amount(rng: random.Random) -> str:
    cents = rng.choice(("", "", ".00", ".99", ".50"))
    return f"{rng.choice('$$€£')}{rng.choice((9, 12, 15, 19, 24, 29, 39, 49, 59, 79, 99, 120, 149, 240, 499))}{cents}"


def _error(rng: random.Random) -> str:
    code = rng.choice((400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504))
    return rng.choice((
        f"error {code}", f"a {code} error", f"'Error {code}'", f"code E{rng.randint(100, 999)}",
        "'Something went wrong'", "'Unable to connect to server'", "'Session expired'",
        "ERR_TIMED_OUT", "a blank white screen", "an endless spinner", "'Invalid token'",
        "'Upload failed'", "'Sync conflict'", f"error 0x{rng.randint(0x1000, 0xFFFF):X}",
        "'Request failed, try again later'", "'Permission denied'",
    ))


SLOTS: dict[str, Callable[[random.Random], str]] = {
    "product": _pick(
        "the app", "the mobile app", "the desktop app", "the web dashboard", "the iOS app",
        "the Android app", "the browser extension", "the admin console", "the sync client",
        "the reporting module", "the scheduler", "our workspace", "the file uploader",
        "the calendar view", "the client portal", "the team inbox", "the Orbit app", "Orbit Desk",
    ),
    "device": _pick(
        "Windows 11", "Windows 10", "my MacBook", "macOS Sonoma", "an iPhone 13", "my iPad",
        "a Pixel 7", "a Samsung Galaxy", "Ubuntu 22.04", "a Chromebook", "my work laptop",
    ),
    "browser": _pick("Chrome", "Firefox", "Safari", "Edge", "Brave"),
    "error": _error,
    "amount": _amount,
    "amount2": _amount,
    "since": _pick(
        "since this morning", "since 9am", "for about an hour", "for the last 40 minutes",
        "since around 2pm", "since the update an hour ago", "since 7:30", "for two hours now",
    ),
    "ago": _pick("last week", "on Monday", "three days ago", "yesterday", "last month", "on the 3rd"),
    "plan": _pick("Basic", "Starter", "Pro", "Team", "Business", "Enterprise", "annual", "monthly"),
    "plan2": _pick("Basic", "Starter", "Pro", "Team", "Business", "Plus"),
    "inv": lambda rng: f"{rng.choice(('INV-', '#', 'INV', 'no. '))}{rng.randint(1000, 99999)}",
    "month": _pick("January", "February", "March", "April", "May", "June", "July", "August",
                   "September", "October", "November", "December"),
    "hour": lambda rng: f"{rng.randint(1, 6)}pm" if rng.random() < 0.6 else f"{rng.randint(9, 11)}am",
    "hours": _pick("2 hours", "3 hours", "an hour", "90 minutes", "4 hours", "a few hours"),
    "n_users": lambda rng: str(rng.choice((5, 8, 12, 20, 35, 40, 60, 120, 250))),
    "place": _pick("Brazil", "Vietnam", "Romania", "an IP in Russia", "a device I don't own",
                   "Lagos", "somewhere in Ohio", "a Linux machine", "Singapore"),
    "name": _pick("Priya", "Tom", "Ana", "Kenji", "Fatima", "Luis", "Mark", "Olga", "Sam", "Chen",
                  "Grace", "Omar", "Ingrid", "Dev", "Rosa", "Jamal", "Mia", "Pete", "Aisha", "Jonas"),
    "integration": _pick("Slack", "Google Calendar", "Zapier", "Salesforce", "HubSpot",
                         "Outlook", "Dropbox", "Teams", "Shopify", "GitHub"),
    "feature": _pick(
        "a Gantt view", "keyboard shortcuts", "a Portuguese translation", "recurring tasks",
        "a dark theme for the web", "custom fields", "bulk editing", "an offline mode",
        "a Linux client", "emoji reactions", "two-factor login by app", "a print layout",
    ),
    "action": _pick(
        "upload a file", "save a project", "export to CSV", "share a board", "attach a photo",
        "add a new contact", "duplicate a template", "open the settings page", "invite a colleague",
        "rename a folder", "print a report", "switch workspaces",
    ),
    "things": _pick("files", "records", "projects", "contacts", "documents", "notes", "orders"),
    "deadline": _pick(
        "our tax filing is due at midnight tonight", "the court filing is due at 5pm today",
        "the auditors need it in {hours}", "the board meeting starts at {hour}",
        "our grant deadline is at {hour} today", "the client demo is in {hours}",
    ),
    "question": _pick(
        "do you have an office in Toronto?", "are you planning {feature}?",
        "what are your support hours at weekends?", "is there a user guide for new staff?",
        "do you run webinars for beginners?", "where is our data stored?",
        "can I change the name on my profile?", "are you hiring designers?",
    ),
}


def _expand(template: str, rng: random.Random) -> str:
    """``[a|b]`` → one alternative, then ``{slot}`` → a filler (fillers may hold slots too)."""
    text = re.sub(r"\[([^\[\]]*)\]", lambda m: rng.choice(m.group(1).split("|")), template)
    for _ in range(2):  # depth 2: a filler such as "deadline" may contain {hours}
        text = re.sub(r"\{(\w+)\}", lambda m: SLOTS[m.group(1)](rng), text)
    return text


# ---------------------------------------------------------------- scenarios
# (name, templates); "hard_" scenarios are built to fool a keyword matcher.
SCENARIOS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "urgent": (
        ("outage", (
            "{product} is [down|completely down|not loading at all|unreachable] for [our whole team|everyone in the company|all {n_users} of our users] {since}[.| and nobody can work.| - we are stuck.]",
            "[Nobody|None of us|Not one person] in our office can [log in|get past the login page|open {product}] {since}. [All|Every one of] {n_users} [accounts|users] get {error}.",
            "whole team locked out, {product} gives {error} for everyone {since}",
            "[Total outage|Everything is down] on our side: {product} [returns|shows] {error} for all users {since}.",
        )),
        ("customer_outage", (
            "Our [checkout|booking page|customer portal|public site|order form] runs on {product} and [returns|shows] {error} for every [visitor|customer] {since}. We are losing [orders|bookings|sales] every minute.",
            "[Customers|Clients] cannot [place orders|book appointments|reach their files] at all - {product} is [down|failing for all of them] {since}.",
        )),
        ("account_takeover", (
            "[Someone|A stranger|An unknown person] logged into my account from {place} [last night|an hour ago|this morning|20 minutes ago] and changed my [password|email address|recovery phone].",
            "I just got a login alert from {place} that wasn't me, and now my [password|2FA] [doesn't work|has been changed]. [Please freeze the account.|Help!]",
        )),
        ("compromise", (
            "I think our workspace [was hacked|has been compromised|is compromised]: there are [admin users|API keys|webhooks] we never created and [files are being downloaded|settings keep changing|emails are going out in our name].",
            "[A former employee|Someone who left last week|A contractor we let go] still has admin access and is deleting [projects|records|files] right now. Please [lock|suspend] [their access|the account]!",
        )),
        ("data_leak", (
            "We accidentally [shared|published] a link to a folder with [customer data|patient records|salary details|passport scans] [publicly|on social media|to the wrong client]. How do we [revoke|kill] it immediately?",
            "[A bug|Your last update] [shows|is showing] other customers' {things} in our account[ - names, emails, everything|]. That's a data breach.",
        )),
        ("data_loss", (
            "[All|Half|About 300] of our {things} [disappeared|were wiped|are gone] after [the sync|the last update|the import] [this morning|an hour ago|last night]. [Is there a backup?|Please restore them.|We need them back today.]",
            "The [import|merge|migration] [overwrote|deleted] our entire [customer list|project history|archive]. Months of work [lost|gone].",
        )),
        ("deadline", (
            "{product} won't let me export the [report|documents|figures|ledger] and {deadline}.",
            "I need [access|my files|the signed contracts] back [right away|within the hour] - {deadline}.",
        )),
        ("hard_billing_deadline", (
            "You charged our card twice ({amount} each) and then [locked|suspended] the account for 'payment issues'. Payroll [has to go out|runs] in {hours}.",
            "Our [card payment|direct debit] failed, the account got [suspended|frozen], and payroll [runs|goes out] at {hour} today. We need access back now.",
            "Invoice {inv} shows unpaid although we paid it, your system [suspended|locked] us, and {deadline}.",
        )),
        ("hard_polite_outage", (
            "[Hope your week is going well!|Hope you are all well.] [Just flagging|Only a heads-up] that {product} [seems to be|appears] down for all of us {since} - nobody here can [log in|open anything]. [Thanks so much.|Much appreciated.]",
            "Quick question - is it normal that every [document|file|project] in our shared [drive|space] now [shows as empty|opens blank]? All of them, since the update.",
        )),
        ("hard_tech_security", (
            "Weird one: password reset emails I never asked for keep arriving and my login history shows a session from {place} [just now|10 minutes ago].",
            "The API log shows thousands of calls with [our key|a key we deleted] from {place} in the last hour. We didn't make them.",
        )),
    ),
    "billing": (
        ("double_charge", (
            "I was charged twice for [my|our] [monthly|annual] [subscription|plan] ({amount} each). Can you refund the duplicate?",
            "[Two|Duplicate] charges of {amount} [showed up|appeared] on [my|our company] card for {month}. [Please reverse one.|One of them has to go.]",
        )),
        ("refund", (
            "I cancelled {ago} but still got billed {amount}. [I'd like a refund.|Please refund it.|Why?]",
            "[Requesting|Can I get] a refund for the {plan} plan - we [stopped using it|never used it|switched providers] {ago}.",
        )),
        ("invoice", (
            "Could you [send|resend] [the invoice|a copy of invoice {inv}|receipts for the last three months]? [Our accountant needs them.|I need it for my expense report.|I can't find it in my email.]",
            "[Need|Looking for] an invoice for {month} with our company name on it[, not my personal one|].",
        )),
        ("payment_method", (
            "How do I [update|change] the [credit card|payment method|billing email] on [my|our] account? [The old card expired.|We switched banks.|Our finance team changed.]",
            "Please [switch us|move us] from card payments to [bank transfer|invoicing|PayPal] starting next month.",
        )),
        ("company_details", (
            "Please add our [VAT number|company address|PO number|tax ID] to [future invoices|invoice {inv}].",
            "The invoice [is addressed to|shows] the wrong [company|address|legal name]. Can you reissue {inv}?",
        )),
        ("plan_change", (
            "We want to [downgrade|move|switch] from {plan} to {plan2}. Will we be [charged|credited] for the rest of the month?",
            "If I [upgrade|add 5 seats] mid-cycle, [how much will the next bill be|is it prorated]?",
        )),
        ("trial", (
            "My free trial turned into a paid [plan|subscription] [without warning|overnight] and I was charged {amount}. I never meant to subscribe.",
        )),
        ("coupon", (
            "The discount code [SPRING20|WELCOME10|NONPROFIT30|EDU50] wasn't applied and I paid the full {amount}.",
            "[We were promised|Sales offered us] [20%|30%|a year] off but the invoice shows the full price of {amount}.",
        )),
        ("declined", (
            "My [card|payment] keeps getting declined [at checkout|when I renew] [but the bank says it's fine|with code {n_users}]. [How else can I pay?|What's going on?]",
        )),
        ("hard_angry", (
            "[THIS IS THE THIRD MONTH|Third month in a row] you've overcharged me. {amount} instead of {amount2}. FIX IT or I'm [leaving|cancelling]!!!",
            "URGENT!!! why was I charged {amount} when I [cancelled|downgraded] {ago}?? [answer me|I want my money back]",
        )),
        ("hard_not_today", (
            "URGENT: [need|we need] a corrected invoice before our books close [next Friday|at the end of the month|next week].",
            "[Important|Time-sensitive]: our auditors want all {month} receipts [by next Tuesday|within two weeks]. Can you send them?",
        )),
        ("hard_bug_caused", (
            "The checkout page froze and showed {error}, and when I retried I was charged [three|two] times. Please refund the extra [ones|charge].",
            "{product} crashed during payment and [I got billed|the card was charged] {amount} [twice|but no receipt came]. I need the duplicate refunded.",
        )),
        ("hard_polite_question", (
            "{product} works great, thanks! Only thing: my receipt for {month} never arrived.",
            "Just curious, why did my bill go [up|from {amount} to {amount2}] this month? No other problems.",
        )),
    ),
    "technical": (
        ("action_error", (
            "When I try to {action} in {product}, I get {error}.",
            "[Can't|Cannot|Unable to] {action} - {product} just shows {error}[.| every time.]",
            "{action} fails with {error} on {device}[.| since the update.]",
        )),
        ("crash", (
            "{product} crashes [on startup|every time I open settings|when I {action}|after a few minutes] on {device}.",
            "[The app keeps closing|It freezes and quits] [whenever I|when I try to] {action}. I'm on {device}.",
        )),
        ("sync", (
            "Changes I make on {device} don't show up [on my laptop|on the web dashboard|on my phone]. Sync seems stuck {since}.",
            "Two of my {things} [show different versions|are out of sync] between {device} and the web.",
        )),
        ("login", (
            "I can't log in on {device} - it says {error}. The password reset email never arrives.",
            "Login loops back to the sign-in page in {browser}. [Cleared cookies already.|Tried incognito too.]",
        )),
        ("integration", (
            "The {integration} integration stopped [posting updates|syncing|working] after I reconnected it.",
            "Connecting {integration} fails with {error}. [Followed the guide step by step.|Tried twice.]",
        )),
        ("api", (
            "Our API calls to [/v2/orders|the export endpoint|/v1/contacts] return {error} even with a fresh token.",
            "The webhook for new [orders|contacts|tickets] [fires twice|never fires|sends empty bodies] since {ago}.",
        )),
        ("slow", (
            "{product} has become [really|very|painfully] slow - pages take [30 seconds|a minute|ages] to load on {device}.",
            "Search [takes forever|times out] once a workspace has more than [500|2,000|10k] {things}.",
        )),
        ("notifications", (
            "I'm not getting [push notifications|email alerts|reminders|mention alerts] [on {device}|from {product}|anymore], even though they're [turned on|enabled] in settings.",
        )),
        ("install", (
            "The installer fails on {device} with {error}.",
            "[Update|Version 4.2] won't install on {device}: [it stops at 80%|it says the package is damaged|nothing happens].",
        )),
        ("display", (
            "[Dark mode|The sidebar|The chart panel|The table view] [looks broken|overlaps the text|doesn't render] in {browser}.",
            "Text in {product} is [cut off|tiny|blurry] on {device} after the update.",
        )),
        ("hard_money_words", (
            "Since we upgraded to the {plan} plan ({amount}/month), the [export|reporting|import] button does nothing.",
            "[Paid|We pay] {amount} a month and {product} still [won't|can't] {action} - it just shows {error}.",
        )),
        ("hard_invoice_feature", (
            "The invoice PDFs that {product} generates for our clients cut off the last line item and the totals column is blank.",
            "I'm trying to update my card but the billing page shows {error} and the Save button is greyed out.",
            "The price field in our product catalog [rounds|changes] {amount} to [0.00|{amount2}] when I save.",
        )),
        ("hard_angry", (
            "URGENT!!! the [dark mode|font size|language] setting resets every time I log in. [fix this|sort it out].",
            "[THIRD TIME I'M WRITING|I have reported this twice already]: {product} [crashes|freezes] when I {action}. Unacceptable!!",
        )),
        ("hard_polite", (
            "[Sorry to bother you|Hope this is the right place] - no rush at all, but {product} gives me {error} whenever I {action}. [Thank you!|Many thanks.]",
        )),
    ),
    "general": (
        ("hours", (
            "What are your support hours [at weekends|over the holidays|on public holidays|in December|on Fridays][| for the UK| for Australia| in Asia| for Europe]?",
            "[Is there|Do you have|Do you offer] [phone|live chat|video call] support[, or only email| in Spanish| in French|]?",
        )),
        ("how_to", (
            "How do I {action} in {product}?",
            "Is there a way to {action} from {device}?",
            "[Where do I find|Where is] the option to {action}? [Couldn't see it in the menu.|Just learning the ropes.|]",
        )),
        ("feature_question", (
            "Does {product} [work offline|support dark mode|run on {device}|have an API|support multiple languages]?",
            "Can [several people|two users] edit the same [project|document] at once?",
        )),
        ("feature_request", (
            "It would be great if you could add {feature}. Any plans?",
            "[Feature request|Suggestion]: {feature}[, please|. Would love it|].",
        )),
        ("feedback", (
            "Just wanted to say the new [design|search|calendar view|mobile app] is [fantastic|really nice|a big improvement]. [Great work!|Thanks, team.]",
            "We've used {product} for [two years|a year|six months] and love it. [Keep it up.|Happy customers here.]",
        )),
        ("account_admin", (
            "How do I [change the name on my profile|transfer ownership of a workspace|add a profile photo|change my username|set my time zone|leave a workspace|change the language of {product}]?",
            "Can I [merge two accounts|use one login for two workspaces|change the email I sign in with|give a colleague read-only access|rename our workspace]?[| Asking for our office manager.]",
        )),
        ("company", (
            "[Are you hiring|Do you have a partner program|Can we feature you in our newsletter|Do you sponsor meetups|Could someone speak at our conference|Do you offer internships]?",
            "[Do you have an office in|Is anyone from your team based in|Do you attend events in] [Berlin|Toronto|Sydney|Nairobi|Madrid|Seoul|Chicago]?",
        )),
        ("policy", (
            "Where is our data stored, and [is there a DPA I can read|do you sell it to anyone|who can see it]?",
            "[Do you have|Where can I find|Can you send me] [an accessibility statement|your privacy policy|a security whitepaper|your terms of service|a list of subprocessors]?",
            "[How long do you keep|What happens to] deleted {things}[ after 30 days|]?",
        )),
        ("learning", (
            "Are there [tutorials|videos|guides|templates] for [new team members|teachers|small shops|people who use {product}]?",
            "Will the webinar on {month} [4|12|20] be recorded?",
        )),
        ("hard_error_in_passing", (
            "I got {error} once last week but it fixed itself - no issue now. [Actually writing to ask|My real question]: {question}",
            "Not a bug report, {product} works fine. [Just wondering|Quick one]: {question}",
        )),
        ("hard_not_urgent", (
            "Not urgent at all, but {question}",
            "[No rush|Whenever you have a minute] - {question}",
        )),
        ("hard_money_words", (
            "No problems with billing or the app - I just wanted to say thanks for [the quick help|a great product].",
            "Our [finance|procurement] team asked which country your company is registered in, for our vendor list.",
            "[I'm on the {plan} plan and|We pay yearly and] wonder whether you [have a user forum|publish a roadmap].",
        )),
        ("hard_angry", (
            "Why on earth is there [still no|no] {feature} yet?!",
            "[Seriously|Honestly], how hard is it to [answer a simple question|find your contact page]?? {question}",
        )),
    ),
}

# Wrappers are label-neutral on purpose: only the core sentence carries the label.
OPENINGS = ("", "", "", "Hi,", "Hello,", "Hi team,", "Hey,", "Good morning,", "Dear support,",
            "Hi there,", "Hello support team,", "To whom it may concern,", "hey guys,", "Hi all,")
CONTEXTS = ("I'm on the {plan} plan.", "We're a team of {n_users}.", "Long-time customer here.",
            "I use {product} every day for work.", "We signed up {ago}.", "I manage our account.",
            "I run a small bakery and we use {product}.", "Writing on behalf of my manager.")
POLITE = ("Sorry to bother you.", "Hope you're doing well.", "Hope this finds you well.")
THANKFUL = ("Thank you so much for your help.", "I really appreciate your time.", "You guys are great.")
ANGRY = ("This is really frustrating.", "I expected better.", "Second time I'm asking!",
         "Please answer quickly!!", "Why is this so hard?!", "Not impressed.")
ASIDES = ("Also, unrelated: {question}", "P.S. {question}", "Separate question: {question}")
# Passing remarks, with the labels each would contradict (so it is never added to those).
PASSING = (("(The login error from last week is gone, by the way.)", ()),
           ("P.S. No billing issues, all good there.", ("billing", "urgent")),
           ("(The app itself works fine.)", ("technical", "urgent")))
CLOSINGS = ("", "", "", "Thanks.", "Thanks!", "Thank you.", "Thanks in advance.", "Cheers.", "Regards,",
            "Best,", "Please advise.", "Appreciate any help.", "thx", "Let me know.")
SIGNATURES = ("{name}", "- {name}", "{name} from accounts", "{name} ({n_users} seats)")

HARD_SHARE = 0.3  # hard cases per label; the rest draw from plain scenarios


def _typo(text: str, rng: random.Random) -> str:
    """One typo in one word of 4+ letters: swap, drop or double a letter."""
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not spots:
        return text
    i = rng.choice(spots)
    w, j = words[i], rng.randrange(1, len(words[i]) - 1)
    kind = rng.randrange(3)
    words[i] = (w[:j] + w[j + 1] + w[j] + w[j + 2:] if kind == 0 else
                w[:j] + w[j + 1:] if kind == 1 else w[:j] + w[j] + w[j:])
    return " ".join(words)


def make_ticket(label: str, rng: random.Random) -> tuple[str, str, str]:
    """One ticket for ``label``: (text, scenario name, core sentence before wrapping)."""
    scenarios = SCENARIOS[label]
    hard = [s for s in scenarios if s[0].startswith("hard_")]
    plain = [s for s in scenarios if not s[0].startswith("hard_")]
    scenario, templates = rng.choice(hard if rng.random() < HARD_SHARE else plain)
    core = _expand(rng.choice(templates), rng)

    parts = [rng.choice(OPENINGS)]
    if rng.random() < 0.15:
        parts.append(rng.choice(CONTEXTS))
    tone = rng.random()
    if tone < 0.12:
        parts.append(rng.choice(POLITE))
    parts.append(core)
    aside = rng.random()
    if aside < 0.08:  # mixed intent: a general question on the side never changes the label (rule 3)
        parts.append(rng.choice(ASIDES))
    elif aside < 0.14:
        parts.append(rng.choice([p for p, clashes in PASSING if label not in clashes]))
    if tone > 0.88:
        parts.append(rng.choice(ANGRY))
    elif tone > 0.80:
        parts.append(rng.choice(THANKFUL))
    closing = rng.choice(CLOSINGS)
    parts.append(closing)
    if closing.endswith(",") or rng.random() < 0.2:
        parts.append(rng.choice(SIGNATURES))
    text = _expand(" ".join(p for p in parts if p), rng)
    text = text[0].upper() + text[1:] if rng.random() < 0.85 else text

    casing = rng.random()
    if casing < 0.07:
        text = text.lower()
    elif casing < 0.09:
        text = text.upper()
    if rng.random() < 0.15:
        text = _typo(text, rng)
    return text, scenario, core


def _dedupe_key(text: str) -> str:
    # Case, punctuation and spacing differences do not make a new ticket.
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


class TicketsTask:
    """Balanced four-way ticket classification; splits share no ticket text."""

    name = "tickets"
    max_new_tokens = 4  # one label word is 1-2 tokens; room for "Label: x"

    def __init__(self, seed: int = 0, n_train: int = 600, n_validation: int = 100, n_test: int = 200):
        self.seed, self.sizes = seed, {"train": n_train, "validation": n_validation, "test": n_test}
        self._splits: dict[str, list[Example]] | None = None

    def splits(self) -> dict[str, list[Example]]:
        if self._splits is None:
            self._splits = self._generate()
        return {k: list(v) for k, v in self._splits.items()}

    def _generate(self) -> dict[str, list[Example]]:
        # Test first, then validation, then train, each from its own RNG: the test set of a seed
        # does not change when n_train does, and later splits skip texts earlier ones used.
        # A core sentence belongs to one split (it may repeat inside it with other wrappers), so
        # no test ticket is a train ticket with a new greeting.
        seen: set[str] = set()
        core_split: dict[str, str] = {}
        out: dict[str, list[Example]] = {}
        for split in ("test", "validation", "train"):
            # A str seed is hashed with SHA-512: stable across processes and PYTHONHASHSEED.
            rng = random.Random(f"tickets:{self.seed}:{split}")
            n = self.sizes[split]
            labels = [LABELS[i % len(LABELS)] for i in range(n)]  # exact balance (±1)
            rng.shuffle(labels)
            examples = []
            for label in labels:
                for _ in range(1000):  # the grammar has >10^6 texts per label; collisions are rare
                    text, scenario, core = make_ticket(label, rng)
                    core_key = _dedupe_key(core)
                    if _dedupe_key(text) not in seen and core_split.setdefault(core_key, split) == split:
                        break
                else:
                    raise RuntimeError(f"tickets: could not draw a new {label} ticket for {split}")
                seen.add(_dedupe_key(text))
                examples.append(example(
                    [*make_prompt(text), {"role": "assistant", "content": label}],
                    label=label, scenario=scenario,
                ))
            out[split] = examples
        return {s: out[s] for s in ("train", "validation", "test")}

    def score(self, generation: str, ex: Example) -> float:
        return float(first_label(generation) == ex.answer)


def load_handwritten(path: Path | None = None) -> list[Example]:
    """The 64 hand-written held-out tickets (different products and phrasing from the grammar)."""
    from harness.paths import DATA_DIR

    path = path or DATA_DIR / HANDWRITTEN_FILE
    with open(path, encoding="utf-8") as f:
        return [example(json.loads(line)["messages"]) for line in f if line.strip()]
