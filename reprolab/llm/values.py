"""Slot values from slot text: NLU++'s normalised shapes (dates, times, amounts, periods, counts).

A tagger finds *where* a slot is ("the 3rd", "20 past 7", "600£"); this module turns that span into the value
NLU++ annotates, resolved against the annotation day (`TODAY`, Tuesday 15 March 2022, see
`reprolab.llm.tasks.NLUPP_CONTEXT`). Absolute dates go through `dateparser` with NLU++'s conventions on top
(a bare day or a month name means its next occurrence, "next Friday" the Friday of next week, a bare year its
1 January). Anything a rule cannot read returns None: the caller drops the slot rather than guess a value.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

TODAY = dt.date(2022, 3, 15)
NOW = dt.datetime(2022, 3, 15, 9, 0)

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
WORD_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "few": 3, "couple": 2,
}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10,
}
CURRENCIES = (
    ("GBP", ("£", "pound", "pounds", "gbp", "quid")),
    ("USD", ("$", "dollar", "dollars", "usd", "bucks")),
    ("EUR", ("€", "euro", "euros", "eur")),
)
DATE_SLOTS = {"date", "date_from", "date_to"}
TIME_SLOTS = {"time", "time_from", "time_to"}
TEXT_SLOTS = {"person_name", "company_name", "shopping_category"}


def _date(d: dt.date) -> dict:
    return {"day": d.day, "month": d.month, "year": d.year}


def _count(word: str) -> int | None:
    word = word.lower()
    if word.isdigit():
        return int(word)
    return WORD_NUMBERS.get(word, ORDINALS.get(word))


def _add_months(d: dt.date, months: int) -> dt.date:
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    return d.replace(year=year, month=month + 1, day=min(d.day, calendar.monthrange(year, month + 1)[1]))


def _month_span(year: int, month: int) -> tuple[dt.date, dt.date]:
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


def _next_month_named(month: int) -> int:
    """The year of a month named without one: this year unless it is already over."""
    return TODAY.year if month >= TODAY.month else TODAY.year + 1


def parse_date(text: str) -> dict | None:
    import dateparser

    t = text.lower().strip().removeprefix("the ").removeprefix("on ").strip()
    if re.fullmatch(r"(19|20)\d\d", t):
        return _date(dt.date(int(t), 1, 1))
    if t in ("today", "now"):
        return _date(TODAY)
    m = re.fullmatch(r"(?:the )?(\d{1,2})(?:st|nd|rd|th)?", t)
    if m and 1 <= int(m.group(1)) <= 31:
        day = int(m.group(1))
        target = TODAY.replace(day=day) if day >= TODAY.day else _add_months(TODAY.replace(day=1), 1).replace(day=day)
        return _date(target)
    m = re.fullmatch(r"next (\w+)", t)
    if m and m.group(1) in WEEKDAYS:
        monday = TODAY - dt.timedelta(days=TODAY.weekday())
        return _date(monday + dt.timedelta(days=7 + WEEKDAYS[m.group(1)]))
    m = re.fullmatch(r"(\w+) (day|week|month|year)s? ago", t)
    if m and _count(m.group(1)):
        n, unit = _count(m.group(1)), m.group(2)
        if unit == "month":
            return _date(_add_months(TODAY, -n))
        if unit == "year":
            return _date(TODAY.replace(year=TODAY.year - n))
        return _date(TODAY - dt.timedelta(days=n * (7 if unit == "week" else 1)))
    m = re.fullmatch(r"in (\w+) (day|week)s?", t)
    if m and _count(m.group(1)):
        return _date(TODAY + dt.timedelta(days=_count(m.group(1)) * (7 if m.group(2) == "week" else 1)))
    settings = {"RELATIVE_BASE": NOW, "PREFER_DATES_FROM": "future", "PREFER_DAY_OF_MONTH": "first",
                "DATE_ORDER": "DMY"}
    parsed = dateparser.parse(t, languages=["en"], settings=settings)
    if parsed is None:
        return None
    d = parsed.date()
    # NLU++ keeps a date of the current month in this year even when it has passed ("Mar 4" is 4 March 2022).
    if d.year == TODAY.year + 1 and d.month == TODAY.month and not re.search(r"\d{4}", t):
        d = d.replace(year=TODAY.year)
    return _date(d)


TIME_WORDS = {"noon": (12, 0), "midday": (12, 0), "midnight": (0, 0)}


def parse_time(text: str) -> dict | None:
    t = text.lower().strip()
    t = re.sub(r"^(at|by|before|after|around|from|to|until|till) ", "", t)
    if t in TIME_WORDS:
        h, mi = TIME_WORDS[t]
        return {"hour": h, "minute": mi}
    pm = bool(re.search(r"(?<![a-z])p\.?\s?m\b\.?|afternoon|evening", t))
    am = bool(re.search(r"(?<![a-z])a\.?\s?m\b\.?|morning", t))
    night = "night" in t
    core = re.sub(r"(?<![a-z])(a|p)\.?\s?m\b\.?|in the (morning|afternoon|evening)|morning|afternoon|evening|"
                  r"night|o'?clock|sharp", " ", t)
    core = re.sub(r"\s+", " ", core).strip()
    hour = minute = None
    words = {"half": 30, "quarter": 15}
    m = re.fullmatch(r"(half|quarter|\d{1,2}) (past|after|to|before) (\d{1,2})", core)
    if m:
        mins = words.get(m.group(1)) or int(m.group(1))
        hour = int(m.group(3))
        if m.group(2) in ("past", "after"):
            minute = mins
        else:
            hour, minute = (hour - 1) % 24, 60 - mins
    else:
        m = re.fullmatch(r"(\d{1,2})(?:[:. ](\d{2}))?", core)
        if not m:
            return None
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if hour > 23 or minute > 59:
        return None
    if (pm and hour < 12) or (night and 6 <= hour < 12):  # "9:45 night" is 21:45, "3:35 night" stays
        hour += 12
    if am and hour == 12:
        hour = 0
    return {"hour": hour, "minute": minute}


def parse_amount(text: str) -> dict | None:
    t = text.lower().replace(",", "")
    m = re.search(r"\d+(?:\.\d+)?", t)
    if not m:
        return None
    amount = float(m.group(0))
    if re.search(r"\d\s*(k|thousand)\b", t):
        amount *= 1000
    currency = "ambiguous"
    for code, marks in CURRENCIES:
        if any(re.search(rf"(?<![a-z]){re.escape(mark)}(?![a-z])", t) for mark in marks):
            currency = code
            break
    return {"amount": amount, "currency": currency}


def parse_number(text: str) -> int | None:
    t = text.lower().strip()
    m = re.search(r"\d+", t)
    if m:
        return int(m.group(0))
    return _count(t)


def _period(start: dt.date, end: dt.date) -> dict:
    return {"type": "absolute", "from": _date(start), "to": _date(end)}


def parse_date_period(text: str) -> dict | None:
    t = text.lower().strip().removeprefix("the ").removeprefix("during ").removeprefix("in ").strip()
    monday = TODAY - dt.timedelta(days=TODAY.weekday())
    shift = {"this": 0, "current": 0, "last": -1, "previous": -1, "past": -1, "next": 1, "coming": 1}
    if re.search(r"\bof (each|every) month\b|\bevery (monday|tuesday|wednesday|thursday|friday|saturday|sunday)",
                 t):
        return {"type": "periodic"}
    if t in ("monthly", "each month", "every month", "per month", "a month"):
        return {"type": "relative", "days": 30}
    if t in ("recently", "lately"):
        return {"type": "ambiguous"}
    m = re.fullmatch(r"(this|current|last|previous|past|next|coming) (week|month|year|quarter)", t)
    if m:
        k, unit = shift[m.group(1)], m.group(2)
        if unit == "week":
            start = monday + dt.timedelta(days=7 * k)
            return _period(start, start + dt.timedelta(days=6))
        if unit == "month":
            first = _add_months(TODAY.replace(day=1), k)
            return _period(*_month_span(first.year, first.month))
        if unit == "year":
            y = TODAY.year + k
            return _period(dt.date(y, 1, 1), dt.date(y, 12, 31))
        q = (TODAY.month - 1) // 3 + k
        y, q = TODAY.year + q // 4, q % 4
        return _period(dt.date(y, 3 * q + 1, 1), _month_span(y, 3 * q + 3)[1])
    m = re.fullmatch(r"(last|past|previous|next|coming) (\w+) (day|week|month)s?", t)
    if m and _count(m.group(2)):
        n, unit, back = _count(m.group(2)), m.group(3), m.group(1) in ("last", "past", "previous")
        if unit == "month":
            if back:
                return _period(_add_months(TODAY.replace(day=1), -n), TODAY.replace(day=1))
            first = _add_months(TODAY.replace(day=1), 1)
            return _period(first, _add_months(first, n))
        days = n * (7 if unit == "week" else 1)
        if back:
            return _period(TODAY - dt.timedelta(days=days), TODAY if unit == "day" else TODAY - dt.timedelta(days=1))
        return _period(TODAY + dt.timedelta(days=1), TODAY + dt.timedelta(days=days))
    m = re.fullmatch(r"(\w+) (day|week|month|year)s?", t)
    if m and _count(m.group(1)):
        per = {"day": 1, "week": 7, "month": 30, "year": 365}[m.group(2)]
        return {"type": "relative", "days": _count(m.group(1)) * per}
    m = re.fullmatch(r"(\w+)(?: (this|last|next) year)?", t)
    if m and m.group(1) in MONTHS:
        month = MONTHS[m.group(1)]
        year = {"this": TODAY.year, "last": TODAY.year - 1, "next": TODAY.year + 1}.get(
            m.group(2) or "", _next_month_named(month))
        return _period(*_month_span(year, month))
    if re.fullmatch(r"(19|20)\d\d", t):
        return _period(dt.date(int(t), 1, 1), dt.date(int(t), 12, 31))
    return None


def parse_time_period(text: str) -> dict | None:
    t = text.lower().strip().removeprefix("the ").removeprefix("this ").removeprefix("in the ").strip()
    parts = {"morning": (0, 12), "afternoon": (12, 19), "evening": (18, 0), "night": (18, 0)}
    if t in parts:
        a, b = parts[t]
        return {"type": "absolute", "from": {"hour": a, "minute": 0}, "to": {"hour": b, "minute": 0}}
    m = re.fullmatch(r"(\w+) (hour|minute)s?", t)
    if m and _count(m.group(1)):
        return {"type": "relative", "days": float(_count(m.group(1)) * (60 if m.group(2) == "hour" else 1))}
    return None


def normalize(slot: str, text: str):
    """The NLU++ value of `slot` written as `text`, or None when no rule reads it."""
    text = text.strip()
    if not text:
        return None
    if slot in DATE_SLOTS:
        return parse_date(text)
    if slot in TIME_SLOTS:
        return parse_time(text)
    if slot == "amount_of_money":
        return parse_amount(text)
    if slot in ("number", "adults", "kids", "rooms", "people"):
        return parse_number(text)
    if slot == "date_period":
        return parse_date_period(text)
    if slot == "time_period":
        return parse_time_period(text)
    return text
