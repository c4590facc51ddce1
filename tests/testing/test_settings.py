"""`FakeSettings`: its validators, the ``serve`` flags built from its fields, the round trip."""

from __future__ import annotations

import argparse
import json
import math
import types
import typing
import urllib.error
import urllib.request
from typing import Any

import attrs
import pytest

import gameball_async.testing
from gameball_async.testing import FakeGameball, FakeSettings, Faults
from gameball_async.testing.__main__ import build_parser, main, settings_from_args
from gameball_async.testing._flags import (
    HELP,
    add_arguments,
    flag_metadata,
    flags_of,
    from_namespace,
    to_argv,
)
from gameball_async.testing._pytest_plugin import marker_settings

from ._helpers import auth

# Every field set away from its default (the Faults too), so that the round
# trip below goes through every flag.
EVERYTHING_CHANGED = FakeSettings(
    api_key="key-a",
    secret_key="key-b",
    host="127.0.0.2",
    port=8123,
    processing_rate=12.5,
    queue_delay=0.25,
    faults=Faults(
        http_429=0.125,
        http_500=0.25,
        http_503=0.375,
        drop=0.5,
        slow=0.0625,
        malformed_json=0.75,
        unknown_status=0.875,
        slow_seconds=2.5,
        latency=(0.01, 0.02),
        retry_after=None,
        retry_after_http_date=True,
        routes=["status", "stop"],
    ),
    seed=-42,
    enforce_rate_limit=False,
    rate_per_second=3,
    rate_per_window=40,
    rate_window=12.0,
    customers={"c1": 10.0, "c2": None, "c3": -2.5},
    customers_must_exist=False,
    default_balance=77.0,
    status_shape="mixed",
    failed_job_rate=0.3,
    base_path="/v9",
    wall_offset=-10.0,
    report_started_at=False,
)


@attrs.frozen(kw_only=True)
class Knobs:
    level: int = attrs.field(default=1, metadata=flag_metadata("how loud"))


@attrs.frozen(kw_only=True)
class MoreSettings(FakeSettings):
    """FakeSettings with new fields, declared as FakeSettings declares its own."""

    extra_delay: float = attrs.field(default=2.5, metadata=flag_metadata("a new knob"))
    verbose: bool = attrs.field(default=False, metadata=flag_metadata("talk more"))
    knobs: Knobs = attrs.field(factory=Knobs, metadata=flag_metadata("knobs"))


@attrs.frozen
class Odd:
    when: complex = 1j


def leaf_fields(cls: type[Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Field paths of an attrs class, nested attrs classes expanded."""
    paths: list[tuple[str, ...]] = []
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        hint = hints[field.name]
        if isinstance(hint, type) and attrs.has(hint):
            paths += leaf_fields(hint, (*path, field.name))
        else:
            paths.append((*path, field.name))
    return paths


def serve_actions() -> dict[str, argparse.Action]:
    """The ``serve`` subcommand's actions, by option string."""
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    return {option: action for action in serve._actions for option in action.option_strings}


def parse_serve(*argv: str) -> FakeSettings:
    return settings_from_args(build_parser().parse_args(["serve", *argv]))


class TestValidators:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("processing_rate", 0),
            ("processing_rate", -1.0),
            ("processing_rate", math.nan),
            ("queue_delay", -0.5),
            ("queue_delay", math.inf),
            ("port", -1),
            ("port", 65536),
            ("rate_per_second", 0),
            ("rate_per_window", -3),
            ("rate_window", 0.0),
            ("failed_job_rate", 1.5),
            ("failed_job_rate", -0.1),
            ("status_shape", "xml"),
            ("default_balance", math.inf),
            ("wall_offset", math.nan),
        ],
    )
    def test_a_bad_value_is_a_value_error_naming_its_field(self, field: str, value: Any) -> None:
        with pytest.raises(ValueError, match=rf"^{field} must be") as caught:
            FakeSettings(**{field: value})
        assert repr(value) in str(caught.value)
        # the same check, and message, through each way of passing settings
        with pytest.raises(ValueError, match=rf"^{field} must be"):
            FakeGameball(**{field: value})
        with pytest.raises(ValueError, match=rf"^{field} must be"):
            FakeGameball(FakeSettings(), **{field: value})

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("api_key", 1),
            ("host", None),
            ("processing_rate", "fast"),
            ("rate_per_second", 2.5),
            ("seed", True),
            ("enforce_rate_limit", "yes"),
            ("customers_must_exist", 1),
            ("base_path", 3),
            ("faults", 0.5),
        ],
    )
    def test_a_value_of_the_wrong_type_is_a_type_error_naming_its_field(
        self, field: str, value: Any
    ) -> None:
        with pytest.raises(TypeError, match=field):
            FakeSettings(**{field: value})

    def test_a_bad_fault_names_the_faults_field(self) -> None:
        with pytest.raises(ValueError, match=r"^http_503 must be a probability"):
            FakeSettings(faults={"http_503": 1.5})

    def test_customers(self) -> None:
        with pytest.raises(TypeError, match="not a str"):
            FakeSettings(customers="c1")
        with pytest.raises(ValueError, match=r"customers\['c1'\] must be a finite"):
            FakeSettings(customers={"c1": math.nan})
        assert FakeSettings(customers=["a", "b"]).customers == {"a": None, "b": None}
        assert FakeSettings(customers={"a": 5}).customers == {"a": 5.0}

    def test_unknown_settings_are_named(self) -> None:
        with pytest.raises(TypeError, match="processing_ratio"):
            FakeGameball(processing_ratio=5)
        with pytest.raises(TypeError, match="must be a FakeSettings"):
            FakeGameball({"processing_rate": 5})  # type: ignore[arg-type]

    def test_values_are_normalised(self) -> None:
        settings = FakeSettings(processing_rate=5, base_path="v1/x/", faults={"drop": 0.5})
        assert settings.processing_rate == 5.0
        assert isinstance(settings.processing_rate, float)
        assert settings.base_path == "/v1/x"
        assert FakeSettings(base_path="/").base_path == ""
        assert settings.faults == Faults(drop=0.5)
        # converters are idempotent, so evolve (and FakeGameball's overrides) keep values
        assert attrs.evolve(settings) == settings


class TestTheValue:
    def test_exported_and_documented(self) -> None:
        assert "FakeSettings" in gameball_async.testing.__all__
        assert FakeSettings.__doc__ is not None
        for field in attrs.fields(FakeSettings):
            assert f":param {field.name}:" in FakeSettings.__doc__, field.name
            assert field.metadata[HELP], field.name

    def test_frozen(self) -> None:
        settings = FakeSettings()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            settings.seed = 3  # type: ignore[misc]

    def test_keys_stay_out_of_the_repr(self) -> None:
        text = repr(FakeSettings(api_key="key-a-123", secret_key="key-b-456"))
        assert "key-a-123" not in text
        assert "key-b-456" not in text
        assert "processing_rate=1000.0" in text

    def test_customers_exist_only(self) -> None:
        assert FakeSettings().customers_exist_only is False
        assert FakeSettings(customers=[]).customers_exist_only is True
        assert (
            FakeSettings(customers=["c"], customers_must_exist=False).customers_exist_only is False
        )
        assert FakeSettings(customers_must_exist=True).customers_exist_only is True


class TestFakeGameballTakesIt:
    def test_keywords_and_settings_are_the_same_thing(self) -> None:
        by_keywords = FakeGameball(processing_rate=5.0, seed=3)
        by_value = FakeGameball(settings=FakeSettings(processing_rate=5.0, seed=3))
        assert by_keywords.settings == by_value.settings == FakeSettings(processing_rate=5, seed=3)
        assert FakeGameball().settings == FakeSettings()

    def test_keywords_override_the_settings(self) -> None:
        base = FakeSettings(seed=3, queue_delay=1.0)
        fake = FakeGameball(base, queue_delay=0.0, api_key="other")
        assert fake.settings == FakeSettings(seed=3, queue_delay=0.0, api_key="other")
        assert fake.api_key == "other"
        assert base.queue_delay == 1.0

    def test_customers_reach_the_ledger(self) -> None:
        fake = FakeGameball(
            settings=FakeSettings(customers={"rich": 50.0, "plain": None}, default_balance=7.0)
        )
        assert (fake.balance("rich"), fake.balance("plain")) == (50.0, 7.0)
        with pytest.raises(KeyError):
            fake.balance("ghost")

    def test_base_path_reaches_the_routes(self) -> None:
        with FakeGameball(settings=FakeSettings(base_path="v9/")) as fake:
            assert fake.base_url == fake.origin + "/v9"
            messages = []
            for url in (fake.base_url + "/batch/1", fake.origin + "/batch/1"):
                request = urllib.request.Request(url, headers=auth(fake))
                with pytest.raises(urllib.error.HTTPError) as caught:
                    urllib.request.urlopen(request, timeout=10)
                assert caught.value.code == 404
                messages.append(json.loads(caught.value.read())["message"])
                caught.value.close()
        assert messages == ["Batch job '1' not found.", "No route GET /batch/1."]


class TestServeFlags:
    def test_every_field_has_its_flag(self) -> None:
        flags = flags_of(FakeSettings)
        assert [flag.path for flag in flags] == leaf_fields(FakeSettings)
        actions = serve_actions()
        for flag in flags:
            action = actions[flag.option]
            assert action.dest == flag.dest
            field = attrs.fields_dict(Faults if flag.path[0] == "faults" else FakeSettings)[
                flag.path[-1]
            ]
            assert action.help is not None
            assert action.help.startswith(field.metadata[HELP])

    def test_defaults_are_the_fields(self) -> None:
        assert parse_serve() == FakeSettings()
        assert to_argv(FakeSettings()) == []

    def test_the_flags_in_use_keep_their_spelling(self) -> None:
        # the benchmarks and the docs use these
        settings = parse_serve(
            "--no-rate-limit",
            "--no-started-at",
            "--customers-must-exist",
            "--processing-rate",
            "100000",
            "--wall-offset",
            "-10",
            "--latency",
            "0",
            "0.5",
            "--fault-429",
            "0.1",
            "--fault-malformed",
            "0.2",
            "--fault-unknown-status",
            "0.3",
            "--slow-seconds",
            "2",
        )
        assert settings == FakeSettings(
            enforce_rate_limit=False,
            report_started_at=False,
            customers_must_exist=True,
            processing_rate=100000,
            wall_offset=-10,
            faults=Faults(
                latency=(0, 0.5),
                http_429=0.1,
                malformed_json=0.2,
                unknown_status=0.3,
                slow_seconds=2,
            ),
        )

    def test_round_trip_through_every_flag(self) -> None:
        argv = to_argv(EVERYTHING_CHANGED)
        given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
        for flag in flags_of(FakeSettings):
            assert {flag.option, f"--no-{flag.option[2:]}"} & given, flag.option
        assert parse_serve(*argv) == EVERYTHING_CHANGED

    @pytest.mark.parametrize(
        "settings",
        [
            FakeSettings(customers=[]),
            FakeSettings(customers=["a"], customers_must_exist=True),
            FakeSettings(faults=Faults(routes=[])),
            FakeSettings(processing_rate=1e-3, seed=2**70),
        ],
    )
    def test_round_trip_edges(self, settings: FakeSettings) -> None:
        assert parse_serve(*to_argv(settings)) == settings

    def test_a_bad_flag_value_exits_2_naming_the_field(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["serve", "--processing-rate", "0"]) == 2
        assert "processing_rate must be > 0" in capsys.readouterr().err

    def test_a_new_field_is_a_new_flag_without_more_code(self) -> None:
        parser = argparse.ArgumentParser()
        add_arguments(parser, MoreSettings)
        helps = {action.dest: action.help for action in parser._actions}
        assert helps["extra_delay"] == "a new knob"
        assert helps["knobs.level"] == "how loud"
        assert from_namespace(MoreSettings, parser.parse_args([])) == MoreSettings()
        changed = MoreSettings(extra_delay=0.5, verbose=True, knobs=Knobs(level=3), seed=9)
        argv = to_argv(changed)
        assert {"--extra-delay=0.5", "--verbose", "--knobs-level=3"} <= set(argv)
        assert from_namespace(MoreSettings, parser.parse_args(argv)) == changed

    def test_a_field_of_a_type_without_a_flag_shape_is_refused(self) -> None:
        with pytest.raises(TypeError, match=r"Odd\.when"):
            flags_of(Odd)


class _Node:
    """Just enough of a pytest item for ``marker_settings``: markers closest first.

    Plain objects stand in for the marks, so that these tests do not depend on
    the plugin having registered the marker in this run.
    """

    def __init__(self, *markers: dict[str, Any]) -> None:
        self._markers = [
            types.SimpleNamespace(name="fake_gameball", args=(), kwargs=kwargs)
            for kwargs in markers
        ]

    def iter_markers(self, name: str | None = None) -> Any:
        return iter([m for m in self._markers if name is None or m.name == name])


class TestMarkerSettings:
    def test_closest_marker_wins_key_by_key(self) -> None:
        node = _Node({"seed": 9}, {"seed": 1, "processing_rate": 200})
        assert marker_settings(node) == {"seed": 9, "processing_rate": 200}

    def test_a_closer_settings_value_replaces_farther_fields(self) -> None:
        node = _Node(
            {"seed": 9},
            {"settings": FakeSettings(queue_delay=0.5)},
            {"seed": 1, "processing_rate": 200, "clock": None},
        )
        merged = marker_settings(node)
        assert merged == {"settings": FakeSettings(queue_delay=0.5), "seed": 9, "clock": None}
        settings = merged.pop("settings")
        assert FakeGameball(settings, **merged).settings == FakeSettings(queue_delay=0.5, seed=9)
