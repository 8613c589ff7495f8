"""The configuration model: strict, frozen pydantic models; every field documented (they become `ivr schema`).

Cross-references (step ids, queues, schedules, endpoints, prompt files) are checked in `check.py`;
this module validates each value on its own.
"""

from __future__ import annotations

import ipaddress
import platform
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ivr.config.base import Strict
from ivr.config.records import RecordsConfig
from ivr.config.speech import TtsConfig
from ivr.config.steps import Flow
from ivr.config.tier import TierConfig
from ivr.config.types import Duration, Name, SipUri

# --- SIP, workers and the front -------------------------------------------------------------------


class SipConfig(Strict):
    listen_host: str = Field("127.0.0.1", description="Public SIP address trunks send to (the front's, or "
                             "the single worker's in single-worker mode).")
    listen_port: int = Field(5060, ge=1, le=65535, description="Public SIP port (UDP and TCP).")
    transports: tuple[Literal["udp", "tcp"], ...] = Field(("udp", "tcp"), min_length=1,
                                                          description="Transports on the public port.")
    media_address: str = Field("127.0.0.1", description="Address workers advertise in SDP; must be reachable "
                               "by the trunk (RTP goes straight to the workers, not through the front).")
    workers: int = Field(1, ge=1, le=256, description="Number of SIP worker processes. 1 = single-worker "
                         "mode: the worker listens on the public address, no front.")
    calls_per_worker: int = Field(4, ge=1, le=4, description="Concurrent calls per worker. The PyPI pjsua2 "
                                  "wheel (pjsua2-python 2.15.1.post1) holds at most 4 calls per process.")
    worker_host: str = Field("127.0.0.1", description="Address workers listen on behind the front.")
    worker_base_port: int = Field(5100, ge=1, le=65000, description="Worker i listens on base + i.")
    rtp_port_start: int = Field(20000, ge=1024, le=65000, description="First RTP port; each worker gets its "
                                "own range of rtp_ports_per_worker ports from here.")
    rtp_ports_per_worker: int = Field(40, ge=8, le=2000, description="RTP+RTCP ports per worker (2 per call, "
                                      "with room for ports still in TIME_WAIT-like reuse).")
    max_call_duration: Duration = Field(900.0, gt=0, description="A call that has not been transferred or "
                                        "ended by then is hung up.")
    answer_timeout: Duration = Field(5.0, gt=0, description="A worker rejects an INVITE with 503 if the "
                                     "controller has not decided within this time.")
    drain_timeout: Duration = Field(30.0, ge=0, description="On SIGTERM: how long live calls may finish "
                                    "before they are hung up; new INVITEs get 503 + Retry-After meanwhile.")
    retry_after: int = Field(30, ge=0, le=86400, description="Seconds in Retry-After on 503 (overload, drain).")

    @model_validator(mode="after")
    def _rtp_range_fits(self) -> SipConfig:
        end = self.rtp_port_start + self.workers * self.rtp_ports_per_worker
        if end > 65536:
            raise ValueError(f"RTP ports run past 65535 ({self.workers} workers x {self.rtp_ports_per_worker} "
                             f"from {self.rtp_port_start})")
        if self.rtp_ports_per_worker < 2 * self.calls_per_worker:
            raise ValueError("rtp_ports_per_worker must be at least 2 x calls_per_worker")
        return self


class PikeConfig(Strict):
    sampling_time: int = Field(2, ge=1, description="Seconds in one pike sampling window.")
    reqs_density: int = Field(60, ge=1, description="Requests per window from one IP before it is banned.")
    remove_latency: int = Field(60, ge=1, description="Seconds a banned IP stays banned after it goes quiet.")


class FrontTls(Strict):
    """TLS on the front (Kamailio's tls module): TLS ends at the front, workers are reached by UDP/TCP."""

    enabled: bool = Field(False, description="Listen for SIP over TLS on sip.listen_host:port.")
    port: int = Field(5061, ge=1, le=65535, description="The front's TLS port.")
    certificate: str = Field("", description="PEM certificate chain of the front (leaf first), relative to the "
                             "config file. Required when enabled.")
    private_key: str = Field("", description="PEM private key of the certificate, relative to the config file.")
    ca_list: str | None = Field(None, description="PEM CA bundle that verifies peers (TLS trunks' certificates "
                                "when the front connects out, client certificates when verify_clients is on).")
    verify_clients: bool = Field(False, description="Require and verify a client certificate (signed by "
                                 "ca_list) on every incoming TLS connection (mutual TLS with the provider).")
    min_version: Literal["TLSv1.2", "TLSv1.3"] = Field("TLSv1.2", description="Lowest protocol version accepted; "
                                                       "SSLv3/TLSv1.0/TLSv1.1 are never offered.")
    ciphers: str = Field("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!SHA1", description="OpenSSL "
                         "cipher list for TLSv1.2 (TLSv1.3 suites are OpenSSL's defaults, all modern).")

    @model_validator(mode="after")
    def _files_when_enabled(self) -> FrontTls:
        if self.enabled and not (self.certificate and self.private_key):
            raise ValueError("front.tls.enabled needs certificate and private_key")
        if self.verify_clients and not self.ca_list:
            raise ValueError("front.tls.verify_clients needs ca_list")
        return self


class FrontConfig(Strict):
    mode: Literal["auto", "managed", "external", "none"] = Field(
        "auto", description="auto: a managed Kamailio when workers > 1, none otherwise. managed: `ivr run` "
        "starts Kamailio as a child process. external: Kamailio runs elsewhere (docker-compose), rendered "
        "with `ivr front render`. none: no front (single worker on the public address).")
    kamailio: str = Field("/usr/sbin/kamailio", description="Path to the kamailio binary (managed mode).")
    children: int = Field(1, ge=1, le=64, description="Kamailio UDP receivers: one keeps a dialog's messages in "
                          "order (bench/README.md, Kamailio, session 17); raise it where the front has spare cores.")
    shared_memory_mb: int = Field(256, ge=32, le=8192, description="Kamailio shared memory (-m). Transactions drive "
                                  "it: each holds ~8 kB for ~5 s after it completes, a call with SIP INFO digits makes "
                                  "a dozen; 64 MB ran out at 50 calls/s (bench/README.md); pages used when touched.")
    probe_interval: int = Field(2, ge=1, description="Seconds between OPTIONS probes of each worker.")
    blocked_user_agents: tuple[str, ...] = Field(
        ("friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sundayddr", "iWar", "VaxSIPUserAgent",
         "SIVuS", "smap", "pplsip", "Cisco-SIPGateway-scan"),
        description="INVITEs/REGISTERs whose User-Agent contains one of these (case-insensitive) are "
        "dropped silently at the front.")
    pike: PikeConfig = Field(default_factory=PikeConfig, description="Flood detection per source IP.")
    stranger_invite_reply: Literal["none", "403"] = Field(
        "none", description="What an INVITE from an address that is no trunk gets. none: silence, like every "
        "other request from a stranger (a scan learns nothing; the refusal is logged at debug level). 403: a "
        "bare 403 Forbidden, handy while a provider's addresses are being set up.")
    tls: FrontTls = Field(default_factory=FrontTls, description="SIP over TLS on the front.")
    trusted_hosts: tuple[str, ...] = Field((), description="Addresses the front sends from, whose X-IVR-Trunk "
                                           "header workers trust (external mode, e.g. a container's address); "
                                           "sip.listen_host is always trusted when a front is in use.")
    rpc_socket: str | None = Field(None, description="External mode: the front's jsonrpcs datagram socket, "
                                   "where `ivr front render` tells Kamailio to create it and where the controller "
                                   "polls it (a directory both mount read-write; the path must fit in 107 bytes). "
                                   "Unset: an external front has no RPC and is not polled. Managed mode always "
                                   "uses run_dir/front/kamailio_rpc.sock.")
    poll_interval: Duration = Field(5.0, ge=0.2, le=300, description="How often the controller reads the "
                                    "managed front's counters and registration state over its RPC socket.")
    registration_retry: Duration = Field(60.0, ge=4, le=3600, description="After a failed registration "
                                         "(error answer, no answer, wrong password) the front tries again after "
                                         "this long; the controller doubles the wait after each further "
                                         "consecutive failure, up to registration_retry_max.")
    registration_retry_max: Duration = Field(1800.0, ge=4, le=86400, description="Longest wait between "
                                             "registration attempts while a registrar keeps failing.")
    tier_source: str = Field("", description="A node behind a Kamailio tier (README \"Beyond one machine\"): the "
                             "tier's address (IP or CIDR). Only an INVITE from there keeps its X-IVR-Trunk "
                             "header, the carrier the tier matched, when it names a trunk of this config; the "
                             "node's front then names the call after that trunk and applies its SRTP rule "
                             "(the tier already checked its transport). From anyone else the header is removed. "
                             "The tier must also be among a trunk's sources. Empty: no tier, trust nobody.")

    @field_validator("tier_source")
    @classmethod
    def _tier_source(cls, value: str) -> str:
        return _cidr(value) if value else value



# --- Trunks and numbers ---------------------------------------------------------------------------


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"not an IP address or CIDR network: {value!r}") from exc
    return value


class Registration(Strict):
    registrar: SipUri = Field(description="Registrar URI, e.g. sip:sip.provider.example.")
    user: str = Field(min_length=1, description="Authentication user (and AOR user part).")
    password: str = Field(min_length=1, description="Password; write ${ENV_VAR} to take it from the "
                          "environment.", json_schema_extra={"writeOnly": True})
    expiry: Duration = Field(300.0, ge=60, description="Registration expiry requested.")
    contact: Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$")] | None = Field(
        None, description="host[:port] of the registered Contact (`sip:reg-<trunk>@host:port`), where the provider "
        "sends its calls: the front's public address. Default sip.listen_host:listen_port; required when that is "
        "0.0.0.0 or behind NAT.")


class Trunk(Strict):
    name: Name = Field(description="Trunk name, used in logs and call records.")
    sources: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        min_length=1, description="Source IP addresses or CIDR networks INVITEs from this trunk come from.")
    dtmf: Literal["rfc4733", "info", "both"] = Field("both", description="DTMF methods accepted.")
    refer: bool = Field(True, description="The trunk accepts REFER. If not, a transfer step bridges: the worker "
                        "calls the queue's target itself and joins the two legs (each such call holds two of a "
                        "worker's call slots).")
    registration: Registration | None = Field(None, description="Outbound registration, when the provider "
                                          "needs one.")
    transport: Literal["any", "udp", "tcp", "tls"] = Field(
        "any", description="Signalling transport of this trunk at the front: its INVITEs arriving over another "
        "transport are refused (403). any: whichever the front listens on. tls needs front.tls.enabled.")
    srtp: Literal["off", "optional", "mandatory"] = Field("off", description="SRTP (SDES, RFC 4568) on the "
                                                        "media of this trunk's calls. optional: answer an "
                                                        "offer with crypto attributes with SRTP, plain RTP "
                                                        "otherwise. mandatory: a plain-RTP offer gets 488. "
                                                        "Keys travel in SDP: use with transport tls.")

    @field_validator("sources")
    @classmethod
    def _valid_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_cidr(v) for v in value)


_NUMBER = re.compile(r"^(\*|\+?[0-9]{1,20}|[A-Za-z0-9_.+\-]{1,64})$")


# --- HTTP endpoints (the CRM) and the demo CRM ----------------------------------------------------


class CacheConfig(Strict):
    ttl: Duration = Field(60.0, description="A cached GET response is fresh this long.")
    stale: Duration = Field(600.0, description="After ttl, a cached response is still served at once this "
                            "long while a background request refreshes it (stale-while-revalidate).")
    max_entries: int = Field(10000, ge=0, description="Cache size bound (least recently used evicted). 0 "
                             "disables the cache.")


class BreakerConfig(Strict):
    failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit.")
    cool_down: Duration = Field(30.0, gt=0, description="How long an open circuit fails fast before one "
                                "probe request is let through.")


class HttpEndpoint(Strict):
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = Field(
        description="Base URL; a step's path is appended.")
    headers: dict[str, str] = Field(default_factory=dict, description="Headers on every request (secrets "
                                    "from ${ENV}); never logged.")
    timeout: Duration = Field(2.0, gt=0, le=30, description="Default latency budget of a request: one "
                              "deadline for connect, retries and body. A fetch step may lower it.")
    retries: int = Field(1, ge=0, le=5, description="Retries for idempotent requests on connect errors and "
                         "5xx, only inside the budget.")
    max_connections: int = Field(100, ge=1, description="Connection pool size.")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Response cache for GET requests.")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="Circuit breaker.")


class DemoCrmConfig(Strict):
    enabled: bool = Field(False, description="`ivr run` starts the built-in demo CRM (for trying the "
                          "product with no outside system).")
    host: str = Field("127.0.0.1", description="Address the demo CRM listens on.")
    port: int = Field(8081, ge=1, le=65535, description="Port the demo CRM listens on.")
    customers: str = Field("customers.yaml", description="Customer data file, relative to the config file.")
    latency: Duration = Field(0.0, description="Artificial latency added to every answer (for demos and "
                              "benchmarks of a slow CRM).")


# --- Queues and schedules ---------------------------------------------------------------------------


class QueueTarget(Strict):
    uri: SipUri = Field(description="A target's SIP URI (an agent's phone, a PBX queue); fixed, no {{...}}.")
    weight: int = Field(1, ge=1, le=1000, description="Share of calls under the `weighted` strategy.")


class Queue(Strict):
    uri: SipUri | None = Field(None, description="Shorthand for a queue with one target: the SIP URI the call "
                               "is referred to (Refer-To). Give `uri` or `targets`, not both.")
    targets: tuple[QueueTarget, ...] = Field((), description="Several targets; a refused or failed one (REFER "
                                             "rejected, NOTIFY >= 300, no NOTIFY in time) moves the call to the "
                                             "next one before the step's on_fail.")
    strategy: Literal["ordered", "round_robin", "weighted", "random"] = Field(
        "ordered", description="Which target is tried first: ordered (the list order), round_robin (each call "
        "starts one further along, per queue, for the server's lifetime), weighted (smooth weighted round robin "
        "by `weight`), random. The remaining targets follow as fallbacks.")
    allow: tuple[Annotated[str, Field(pattern=r"^sips?:[^\s<>\"?]+$")], ...] = Field(
        (), description="URI patterns a transfer step's variable `target` must match, e.g. "
        "'sip:*@pbx.example.com'; '*' stands for one or more characters of a user part or host (never '@', "
        "':', ';', '?' or '/'). A target outside them, or an empty one, is skipped (logged).")
    headers: dict[str, str] = Field(default_factory=dict, description="Caller data for the agent; values "
                                    "are templates, e.g. X-Customer-Tier: '{{tier}}'. Where they go: "
                                    "`header_mode`.")
    header_mode: Literal["refer", "refer_to", "both"] = Field(
        "refer", description="refer: headers on the REFER itself (the transferee rarely passes them on). "
        "refer_to: embedded in the Refer-To URI (`?X-Customer-Id=C-1001`, RFC 3261 19.1.1, RFC 3515), which the "
        "transferee copies into its INVITE to the target. both: the two.")
    uri_params: dict[Name, str] = Field(default_factory=dict, description="Parameters added to the "
                                        "Refer-To URI; values are templates, URI-escaped when rendered.")

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(r"^[A-Za-z][A-Za-z0-9\-]*$", name):
                raise ValueError(f"not a SIP header name: {name!r}")
            if name.lower() in {"refer-to", "referred-by", "to", "from", "call-id", "cseq", "via", "contact"}:
                raise ValueError(f"header {name!r} is set by the SIP stack and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _targets(self) -> Queue:
        if self.uri is not None and self.targets:
            raise ValueError("give `uri` (one target) or `targets`, not both")
        if self.uri is None and not self.targets and not self.allow:
            raise ValueError("a queue needs `uri`, `targets`, or `allow` (for a transfer step's variable target)")
        return self

    @property
    def all_targets(self) -> tuple[QueueTarget, ...]:
        """The fixed targets: `targets`, or the one `uri`."""
        return self.targets if self.uri is None else (QueueTarget(uri=self.uri),)


_SPAN = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class HolidayCalendar(Strict):
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = Field(description="ISO country code for the "
                                                                 "`holidays` package, e.g. GB, US, DE.")
    subdivision: str | None = Field(None, description="Region, e.g. ENG, CA, BY.")


class Schedule(Strict):
    timezone: str = Field(description="IANA time zone, e.g. Europe/London.")
    hours: dict[Weekday, tuple[Annotated[str, Field(pattern=_SPAN.pattern)], ...]] = Field(
        description="Opening hours per weekday as 'HH:MM-HH:MM' spans; a missing day is closed.")
    holidays: HolidayCalendar | None = Field(None, description="Public holidays (closed all day).")
    closed_dates: tuple[str, ...] = Field((), description="Extra closed days, 'YYYY-MM-DD'.")
    open_dates: tuple[str, ...] = Field((), description="Days open despite a holiday, 'YYYY-MM-DD'.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("closed_dates", "open_dates")
    @classmethod
    def _iso_dates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import datetime as dt

        for day in value:
            try:
                dt.date.fromisoformat(day)
            except ValueError as exc:
                raise ValueError(f"not a date (YYYY-MM-DD): {day!r}") from exc
        return value

    @field_validator("hours")
    @classmethod
    def _ordered_spans(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for day, spans in value.items():
            for span in spans:
                start, end = span.split("-")
                if end <= start:
                    raise ValueError(f"{day}: span {span!r} ends before it starts")
                if end > "24:00":
                    raise ValueError(f"{day}: span {span!r} ends after 24:00")
        return value


# --- Admin, logging, the whole file ---------------------------------------------------------------------


class AdminConfig(Strict):
    enabled: bool = Field(True, description="Serve /healthz, /metrics, /calls and the /console page.")
    host: str = Field("127.0.0.1", description="Admin HTTP address.")
    port: int = Field(8080, ge=1, le=65535, description="Admin HTTP port.")
    token_env: str | None = Field(None, description="Environment variable holding the admin bearer token. "
                                  "Required when `host` is not a loopback address (the server refuses to start "
                                  "without it); when set, every admin path needs it, also on loopback.")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> AdminConfig:
        if self.enabled and self.token_env is None and not is_loopback_host(self.host):
            raise ValueError(f"host {self.host} is not loopback: set token_env (the admin port would be open)")
        return self


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost" (the admin port is open only there)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["auto", "json", "console"] = Field("auto", description="auto: console on a terminal, "
                                                       "JSON otherwise.")


class IvrConfig(Strict):
    sip: SipConfig = Field(default_factory=SipConfig, description="SIP listeners, media, workers.")
    front: FrontConfig = Field(default_factory=FrontConfig, description="The Kamailio front.")
    trunks: tuple[Trunk, ...] = Field(min_length=1, description="Where calls may come from.")
    numbers: dict[str, Name] = Field(min_length=1, description="Dialed number (E.164 or user part) -> flow; "
                                     "'*' is the catch-all. Unknown numbers without it get 404.")
    http: dict[Name, HttpEndpoint] = Field(default_factory=dict, description="HTTP endpoints for fetch "
                                           "steps (the CRM among them).")
    demo_crm: DemoCrmConfig = Field(default_factory=DemoCrmConfig, description="The built-in demo CRM.")
    queues: dict[Name, Queue] = Field(min_length=1, description="Transfer targets.")
    schedules: dict[Name, Schedule] = Field(default_factory=dict, description="Business hours.")
    flows: dict[Name, Flow] = Field(min_length=1, description="Named call flows.")
    switches: dict[Name, bool] = Field(default_factory=dict, description="Run-time switches (e.g. outage: "
                                       "false) with their state at start; an operator flips them with POST "
                                       "/switches/<name> on the admin API, and `switch` conditions read them.")
    prompts_dir: str = Field("../prompts", description="Directory of <prompt>.wav files, relative to the "
                             "config file.")
    admin: AdminConfig = Field(default_factory=AdminConfig, description="Admin HTTP endpoint.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logs.")
    records: RecordsConfig = Field(default_factory=RecordsConfig, description="Call records: database, spool, "
                                   "retention, webhook.")
    tts: TtsConfig = Field(default_factory=TtsConfig, description="Text to speech of `say` steps; languages.")
    tier: TierConfig | None = Field(None, description="A Kamailio tier over several IVR nodes (`ivr tier run`); "
                                    "absent on a node's own config.")
    node_name: str = Field("", pattern=r"^[A-Za-z0-9._-]*$", max_length=64, description="This node's name in "
                           "call records (`node`), the status and the logs' context; empty: the host name. Several "
                           "nodes on one machine need their own (IVR_NODE_NAME).")

    def node(self) -> str:
        """The node's name: node_name, or the host name."""
        return self.node_name or platform.node()

    @model_validator(mode="after")
    def _tier_source_is_a_trunk(self) -> IvrConfig:
        """The tier's calls must reach the TRUNK checks: its address must be among a trunk's sources."""
        if not self.front.tier_source:
            return self
        tier = ipaddress.ip_network(self.front.tier_source, strict=False)
        for trunk in self.trunks:
            for source in trunk.sources:
                net = ipaddress.ip_network(source, strict=False)
                if tier.version == net.version and tier.subnet_of(net):  # type: ignore[arg-type]
                    return self
        raise ValueError(f"front.tier_source {self.front.tier_source} is among no trunk's sources: the tier's calls "
                         "would get silence (list the tier's address in the trunk that stands for the tier)")

    @field_validator("numbers")
    @classmethod
    def _number_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for number in value:
            if not _NUMBER.match(number):
                raise ValueError(f"not a dialed number or '*': {number!r}")
        return value

    @field_validator("trunks")
    @classmethod
    def _unique_trunks(cls, value: tuple[Trunk, ...]) -> tuple[Trunk, ...]:
        names = [t.name for t in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate trunk names: {', '.join(dupes)}")
        return value

    def flow_for(self, dialed: str) -> str | None:
        """The flow for a dialed number: exact match, then with/without a leading '+', then '*'."""
        for key in (dialed, dialed.lstrip("+"), "+" + dialed.lstrip("+"), "*"):
            if key in self.numbers:
                return self.numbers[key]
        return None
