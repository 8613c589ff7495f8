"""The say step: rendering with variables and readers, the call's language, barge-in, static texts."""

from __future__ import annotations

import datetime as dt

from flowkit import T0, call, connect, make_config

from ivr.config.model import IvrConfig
from ivr.flow.commands import Play, Speak, StopPlayback
from ivr.flow.events import DigitReceived, PlaybackFinished
from ivr.flow.opening import opening_variables
from ivr.flow.speech import render_speech, static_texts

GREET = {"id": "hi", "type": "say", "text": {"en": "Welcome back, {{name}}. You are caller number {{n|number}}.",
                                             "es": "Bienvenido, {{name}}. Es usted el cliente {{n|number}}."}}


def test_render_with_readers_and_unset_variables() -> None:
    variables = {"n": "3", "opens": "08:00", "day": "mon"}
    assert render_speech("You are caller number {{n|number}}.", variables, "en") == "You are caller number three."
    assert render_speech("We open at {{opens|time}} on {{day|weekday}}", variables, "en") == \
        "We open at 8 a.m. on Monday"
    assert render_speech("Abrimos a {{opens|time}} el {{day|weekday}}", variables, "es") == \
        "Abrimos a las 8 de la mañana el lunes"
    assert render_speech("Hello {{missing}} there", variables, "en") == "Hello there"


def test_say_speaks_in_the_call_language_and_continues_when_spoken() -> None:
    config = make_config([{"id": "s", "type": "set", "values": {"lang": "es", "name": "Ana", "n": "21"}}, GREET,
                          {"id": "bye", "type": "hangup", "prompts": ["goodbye"]}])
    session, commands = connect(config)
    assert commands == [Speak(1, (("say", "Bienvenido, Ana. Es usted el cliente veintiuno."),), "es")]
    assert session.handle(PlaybackFinished(1), T0 + 2) == [Play(2, ("goodbye",), interruptible=False, lang="es")]
    assert session.path == ("s:set", "hi:said")


def test_unknown_language_falls_back_to_the_default_voice() -> None:
    config = make_config([{"id": "s", "type": "set", "values": {"lang": "xx", "name": "Bo"}}, GREET])
    _, commands = connect(config)
    assert commands == [Speak(1, (("say", "Welcome back, Bo. You are caller number ."),), "en")]


def test_a_digit_barges_in_and_is_kept() -> None:
    config = make_config([{"id": "hi", "type": "say", "text": "Hello."},
                          {"id": "g", "type": "gather", "prompts": ["x"], "variable": "v", "max_digits": 1,
                           "on_exhausted": "g"}])
    session, commands = connect(config)
    assert commands == [Speak(1, (("say", "Hello."),), "en")]
    assert session.handle(DigitReceived("5"), T0 + 1)[0] == StopPlayback(1)
    assert session.variables["v"] == "5"
    assert session.path[:2] == ("hi:barged_in", "g:ok")


def test_static_texts_are_those_without_variables() -> None:
    config = make_config([{"id": "a", "type": "say", "text": {"en": "Hello.", "es": "Hola.", "fr": "Salut."}},
                          {"id": "b", "type": "say", "text": "Hi {{caller}}."},
                          {"id": "m", "type": "menu", "prompts": [{"say": "Para español, marque 2.", "lang": "es"}],
                           "options": {"2": "a"}, "on_exhausted": "a"}])
    assert sorted(static_texts(config)) == [("Hello.", "en"), ("Hola.", "es"), ("Para español, marque 2.", "es")]


def test_a_closed_schedule_says_when_it_opens(default_config: IvrConfig) -> None:
    saturday = dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC).timestamp()
    session, commands = connect(default_config, "support", now=saturday, info=call(dialed="200"))
    assert commands == [Speak(1, (("prompt", "closed"), ("say", "We open at 8 a.m. on Monday.")), "en",
                              interruptible=False)]
    assert session.variables["opens_date"] == "2026-12-07"


def test_christmas_eve_opens_after_the_bank_holidays(default_config: IvrConfig) -> None:
    schedule = default_config.schedules["office"]
    christmas_eve = dt.datetime(2026, 12, 24, 10, tzinfo=dt.UTC).timestamp()  # a closed date, then Christmas,
    assert opening_variables(schedule, christmas_eve) == {  # the weekend and Boxing Day's substitute Monday
        "opens_time": "08:00", "opens_day": "tue", "opens_date": "2026-12-29"}
    friday_evening = dt.datetime(2026, 3, 6, 17, 30, tzinfo=dt.UTC).timestamp()
    assert opening_variables(schedule, friday_evening)["opens_date"] == "2026-03-09"
    assert opening_variables(schedule.model_copy(update={"hours": {}}), friday_evening) == {}
