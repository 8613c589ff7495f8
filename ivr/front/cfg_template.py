"""The kamailio.cfg template of the front, filled by `kamailio.render` (string.Template with a `%%` delimiter,
so Kamailio's own `$var` syntax passes through untouched). ivr/front/README.md explains the security design.

Theory of operation, in the order a request meets it:
1. Requests from the workers (dispatcher set 1, address and port; on a node its fixed address and port range,
   `kamailio.worker_test`) skip the outside checks.
2. Outside requests: pike flood ban (trunk addresses exempt) and scanner User-Agents are dropped silently;
   Max-Forwards (483); sanity (400 and friends); any X-IVR-* header is removed. A source that is no trunk
   gets silence to everything (INVITE, OPTIONS, REGISTER, MESSAGE, REFER, BYE, forged in-dialog requests):
   it learns nothing; `front.stranger_invite_reply: "403"` gives its initial INVITEs a bare 403. The one
   exception is the managed start's readiness probe, an OPTIONS whose Request-URI user is a random
   per-start token (`probe`).
3. CANCEL and retransmissions go to tm. In-dialog requests (To-tag) are relayed only for a dialog the front
   created (`dialog` module, `dlg_manage()` on the trunk's INVITE) and only from its two parties: the trunk
   source that sent the INVITE, or a worker. The front picks the next hop itself, never the Request-URI:
   the dialog's worker for the trunk side, the caller's source address for the worker side. An unknown
   or ended dialog gets 481, anyone else silence. BYE/CANCEL release the worker's load (algorithm 10).
4. Initial requests: a preloaded Route is refused (403), as Kamailio's default config does. OPTIONS to
   the front: 200 for trunks. INVITE: source must be a trunk (permissions address file; tag = trunk name);
   an INVITE to a registration Contact (`reg-<trunk>`) must come from that trunk's own sources (address
   group 100 + i) and is named that trunk; `X-IVR-Trunk: <name>` added; dispatcher set 1, algorithm 10
   (call load, maxload per worker); none free -> 503 + Retry-After. Any other initial method: 405. Drain and
   tier mode (other nodes, algorithm, no call load): the %%{drain_*}/%%{load_*} blocks of tier_template.py.
5. Failure route: timeout marks the worker inactive (probing brings it back); timeout/408/486/5xx/600
   fail over with ds_next_dst only when a next destination exists; otherwise 503 + Retry-After.
6. A reply that belongs to no transaction of the front is dropped (no stateless forwarding of forged replies).
7. Topology hiding (`topoh`): in everything sent to the outside, the workers' Via, Contact and Record-Route
   are masked behind the front's address (decoded again when they come back), so a trunk learns no worker
   address from SIP; only the SDP names where RTP goes (sip.media_address), as it must.
8. A worker's own initial INVITE (bridged transfer leg, sent with the front as outbound proxy) is relayed,
   record-routed, only to a configured queue target (host:port of a queue URI); anything else from a worker 403.
No reply or request the front originates names a product (`server_signature=no`, no User-Agent).

Every refusal goes through `route[REFUSE]` (or `route[COUNT_REFUSAL]` where the reply is sent elsewhere):
set `$var(refuse)` to the code (`403`, `481`, `pike`, `scanner`, `stranger`, ...) and `$var(reason)`, call
the route. It counts `refused_<code>_<class>` with the statistics module (class: trunk, nontrunk, worker)
and replies (numeric codes) or drops (`stranger`: anything from a source that is no trunk, silently). The
controller reads the counters over the jsonrpcs datagram socket (`ivr/front/rpc.py`).
"""

from __future__ import annotations

from string import Template


class CfgTemplate(Template):
    delimiter = "%%"


MAIN = CfgTemplate("""#!KAMAILIO
# Rendered by `ivr front render` from %%{source}; do not edit: edit the YAML and render again.

####### Global parameters #######
debug=%%{debug}
log_stderror=yes
log_prefix="{$mt $hdr(CSeq) $ci} "
memdbg=5
memlog=5
children=%%{children}
%%{tcp}
%%{tls_global}dns=off
rev_dns=off
use_dns_cache=off
dns_try_ipv6=off
auto_aliases=no
server_signature=no
sip_warning=0
%%{listen}

####### Modules #######
%%{tls_load}loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "dialog.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "pike.so"
loadmodule "permissions.so"
loadmodule "dispatcher.so"
loadmodule "statistics.so"
loadmodule "topoh.so"
%%{rpc_load}%%{uac_load}
modparam("tm", "fr_timer", %%{fr_timer})
modparam("tm", "fr_inv_timer", %%{fr_inv_timer})
modparam("tm", "auto_inv_100", 1)
modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)
modparam("dialog", "default_timeout", %%{dialog_timeout})
modparam("dialog", "dlg_match_mode", 1)

modparam("sanity", "autodrop", 0)  # a failed check returns false (after its reply) so the refusal is counted

modparam("pike", "sampling_time_unit", %%{pike_sampling})
modparam("pike", "reqs_density_per_unit", %%{pike_density})
modparam("pike", "remove_latency", %%{pike_latency})

modparam("permissions", "address_file", "%%{address_file}")
modparam("permissions", "peer_tag_avp", "$avp(trunk)")
modparam("permissions", "load_backends", 1)

%%{rpc_params}%%{stat_params}%%{drain_param}
modparam("dispatcher", "list_file", "%%{dispatcher_file}")
modparam("dispatcher", "ds_hash_size", 9)
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_hash_expire", %%{hash_expire})
modparam("dispatcher", "ds_hash_initexpire", %%{hash_initexpire})
modparam("dispatcher", "ds_ping_interval", %%{probe_interval})
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_reply_codes", "class=2")
modparam("dispatcher", "ds_ping_from", "sip:front@%%{listen_host}")
%%{uac_params}
%%{tls_params}
modparam("topoh", "mask_key", "%%{mask_key}")
modparam("topoh", "mask_ip", "%%{mask_ip}")
modparam("topoh", "mask_callid", 0)

####### Routing #######
request_route {
\tif (%%{from_worker}) {
\t\t$var(from_worker) = 1;
\t} else {
\t\t$var(from_worker) = 0;
\t\troute(OUTSIDE);
\t}

\tif (is_method("CANCEL")) {
\t\tif (t_check_trans()) {
\t\t\t%%{load_update}
\t\t\tt_relay();
\t\t}
\t\texit;
\t}

\tif (!is_method("ACK")) {
\t\tif (t_precheck_trans()) {
\t\t\tt_check_trans();
\t\t\texit;
\t\t}
\t\tt_check_trans();
\t}

\tif (has_totag()) {
\t\troute(WITHINDLG);
\t\texit;
\t}

\tif ($var(from_worker) == 1) {
\t\troute(WORKER_OUT);
\t\texit;
\t}

\tif (is_present_hf("Route")) {
\t\tif (is_method("ACK")) {
\t\t\texit;
\t\t}
\t\t$var(refuse) = "403"; $var(reason) = "Preload Route denied"; route(REFUSE);
\t}

\tif (is_method("OPTIONS") && uri==myself) {
%%{drain_options}\t\tsl_send_reply("200", "OK");
\t\texit;
\t}

\tif (!is_method("INVITE")) {
\t\tappend_to_reply("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY, INFO\\r\\n");
\t\t$var(refuse) = "405"; $var(reason) = "Method Not Allowed"; route(REFUSE);
\t}

\troute(TRUNK);
\troute(DISPATCH);
}

route[OUTSIDE] {
\t# A trunk carries every caller of its provider from one address: pike would ban it at a few calls/s.
\tif (!allow_source_address("1") && !pike_check_req()) {
\t\t$var(refuse) = "pike"; route(REFUSE);
\t}
%%{ua_check}
\tif (!mf_process_maxfwd_header("10")) {
\t\t$var(refuse) = "483"; $var(reason) = "Too Many Hops"; route(REFUSE);
\t}
\tif (!sanity_check("17895", "7")) {
\t\t$var(refuse) = "400"; route(COUNT_REFUSAL); exit;  # sanity has replied itself
\t}
%%{tier_trust}\tremove_hf_re("^[Xx]-[Ii][Vv][Rr]-");
%%{probe}\tif (allow_source_address("1")) {
\t\treturn;
\t}
\t# No trunk: silence (front.stranger_invite_reply may give an initial INVITE a bare 403).
%%{stranger_invite}\t$var(refuse) = "stranger"; route(REFUSE);
}

route[WITHINDLG] {
\tif (!is_known_dlg() || $dlg_var(ended) == "1") {
\t\t# A non-2xx ACK belongs to a transaction, not a dialog; anything else is not ours, or has ended (the
\t\t# dialog module keeps a dialog a few seconds after its BYE: the `ended` mark, set when the BYE is
\t\t# answered, closes it at once).
\t\tif (is_method("ACK")) {
\t\t\tif (t_check_trans()) {
\t\t\t\troute(RELAY);
\t\t\t}
\t\t\texit;
\t\t}
\t\t$var(refuse) = "481"; $var(reason) = "Unknown Dialog"; route(REFUSE);
\t}
\tif ($var(from_worker) == 1) {
\t\t$var(next) = $dlg_var(caller);
\t} else if ($si == $dlg_var(caller_ip)) {
\t\t$var(next) = $dlg_var(worker);
\t} else {
\t\t$var(refuse) = "stranger"; route(REFUSE);
\t}
\tif (!loose_route()) {
\t\tif (is_method("ACK")) {
\t\t\texit;
\t\t}
\t\t$var(refuse) = "403"; $var(reason) = "Not Routed Here"; route(REFUSE);
\t}
\tif (is_method("BYE")) {
\t\t%%{load_update}
\t\tt_on_reply("BYE_ANSWERED");
\t}
\t# The next hop is the dialog's other party, whatever the Request-URI or Route headers name.
\t$du = $var(next);
\troute(RELAY);
}

# A worker's own call (a bridged transfer's second leg): an initial INVITE to a configured queue target only.
route[WORKER_OUT] {
\t$var(target) = $rd + ":" + $rp;
\tif (!is_method("INVITE") || !($var(target) =~ "%%{queue_targets}")) {
\t\txlog("L_WARN", "front.worker_out_refused $rm $ru\\n");
\t\t$var(refuse) = "403"; $var(reason) = "Forbidden"; route(REFUSE);
\t}
\tremove_hf("Route");
\t# The dialog's two parties for the in-dialog rules: this worker, and the queue target it calls.
\tdlg_manage();
\t$dlg_var(worker) = $sut;
\t$dlg_var(caller_ip) = $rd;
\t$dlg_var(caller) = "sip:" + $rd + ":" + $rp;
\trecord_route();
\troute(RELAY);
}

route[TRUNK] {
\tif (!allow_source_address("1")) {
\t\t$var(refuse) = "403"; $var(reason) = "Forbidden"; route(REFUSE);
\t}
%%{registered}%%{tier_trunk}
\tappend_hf("X-IVR-Trunk: $avp(trunk)\\r\\n");
\tdlg_manage();
\t$dlg_var(caller_ip) = $si;
\t$dlg_var(caller) = $sut;
%%{trunk_security}\trecord_route();
}

route[DISPATCH] {
%%{drain_dispatch}\tif (!ds_select_dst("1", "%%{ds_algorithm}")) {
\t\troute(FULL);
\t}
\t$dlg_var(worker) = $du;
\tt_on_failure("FAILOVER");
\tt_on_reply("WORKER_REPLY");
\troute(RELAY);
}

route[FULL] {
\tappend_to_reply("Retry-After: %%{retry_after}\\r\\n");
\t$var(refuse) = "503"; $var(reason) = "Service Unavailable"; route(REFUSE);
}

# Count one refusal as refused_<$var(refuse)>_<trunk|nontrunk|worker>; numeric codes are replied statelessly
# with $var(reason), the others (pike, scanner) dropped. Never returns.
route[REFUSE] {
\troute(COUNT_REFUSAL);
\tif ($var(refuse) =~ "^[1-6][0-9][0-9]$") {
\t\t$var(code) = $(var(refuse){s.int});  # sl_send_reply reads an integer variable; a string gives 500
\t\tsl_send_reply("$var(code)", "$var(reason)");
\t}
\texit;
}

route[COUNT_REFUSAL] {
\tif ($var(from_worker) == 1) {
\t\t$var(class) = "worker";
\t} else if (allow_source_address("1")) {
\t\t$var(class) = "trunk";
\t} else {
\t\t$var(class) = "nontrunk";
\t}
\t$var(stat) = "refused_" + $var(refuse) + "_" + $var(class);
\tupdate_stat("$var(stat)", "+1");
}

route[RELAY] {
\tif (!t_relay()) {
\t\tsl_reply_error();
\t}
\texit;
}

reply_route {
\t# A reply that matches no transaction of ours is dropped: never forwarded statelessly along its Vias.
\tif (!t_check_trans()) {
\t\tdrop;
\t}
}

event_route[topoh:msg-outgoing] {
\t# Only what leaves for the outside is masked: the workers get plain SIP (their own Via/Contact back).
\tif (%%{to_worker}) {
\t\tdrop;
\t}
}

onreply_route[BYE_ANSWERED] {
\t# Requests already in flight when the BYE was sent still pass; once it is answered the dialog is closed.
\tif (status =~ "^2[0-9][0-9]$") {
\t\t$dlg_var(ended) = "1";
\t}
}

onreply_route[WORKER_REPLY] {
\tif (is_method("INVITE") && status =~ "^2[0-9][0-9]$") {
\t\t%%{load_update}
\t}
}

failure_route[FAILOVER] {
\tif (t_is_canceled()) {
\t\texit;
\t}
\tif (t_branch_timeout() && !t_branch_replied()) {
\t\txlog("L_WARN", "front.worker_timeout $du\\n");
\t\tds_mark_dst("ip");
\t} else if (!t_check_status("408|486|5[0-9][0-9]|600")) {
\t\t%%{load_unset}
\t\texit;
\t}
\tif ($xavp(_dsdst_[1]=>uri) != $null && ds_next_dst()) {
\t\t$dlg_var(worker) = $du;
\t\tt_on_failure("FAILOVER");
\t\tt_on_reply("WORKER_REPLY");
\t\troute(RELAY);
\t}
\t%%{load_unset}
\tappend_to_reply("Retry-After: %%{retry_after}\\r\\n");
\t$var(from_worker) = 0;  # $var is per process, not per message: this process last routed something else
\t$var(refuse) = "503"; route(COUNT_REFUSAL);
\tt_reply("503", "Service Unavailable");
\texit;
}
""")

PROBE = CfgTemplate("""\tif (is_method("OPTIONS") && !has_totag() && $rU == "%%{instance}") {
\t\tappend_to_reply("X-IVR-Front: %%{instance}\\r\\n");
\t\tsl_send_reply("200", "OK");
\t\texit;
\t}
""")

STRANGER_403 = """\tif (is_method("INVITE") && !has_totag()) {
\t\t$var(refuse) = "403"; $var(reason) = "Forbidden"; route(REFUSE);
\t}
"""

UA_CHECK = CfgTemplate("""\tif ($(ua{s.tolower}) =~ "%%{pattern}") {
\t\t$var(refuse) = "scanner"; route(REFUSE);
\t}
""")

UAC_LOAD = 'loadmodule "db_text.so"\nloadmodule "uac.so"\n'

UAC_PARAMS = CfgTemplate("""modparam("uac", "reg_db_url", "text://%%{dbtext_dir}")
modparam("uac", "reg_contact_addr", "%%{contact_addr}")
modparam("uac", "reg_timer_interval", %%{timer_interval})
modparam("uac", "reg_retry_interval", %%{retry_interval})
""")

REGISTERED = CfgTemplate("""\tif ($rU == "%%{uuid}") {
\t\tif (!allow_source_address("%%{group}")) {
\t\t\t$var(refuse) = "403"; $var(reason) = "Forbidden"; route(REFUSE);
\t\t}
\t\t$avp(trunk) = "%%{trunk}";
\t\t$rU = $tU;
\t}
""")

RPC_LOAD = 'loadmodule "jsonrpcs.so"\nloadmodule "kex.so"\n'

RPC_PARAMS = CfgTemplate("""modparam("jsonrpcs", "transport", 4)
modparam("jsonrpcs", "dgram_socket", "%%{rpc_socket}")
modparam("jsonrpcs", "dgram_mode", 0600)
""")

STAT_PARAM = CfgTemplate("""modparam("statistics", "variable", "%%{name}")
""")

# --- TLS and SRTP (ivr.front.tls): kept apart from the routing above so the two evolve separately --------

TLS_GLOBAL = "enable_tls=yes\n"

TLS_LOAD = 'loadmodule "tls.so"\n'

TLS_PARAMS = CfgTemplate("""modparam("tls", "config", "%%{tls_cfg}")
modparam("rr", "enable_double_rr", 1)
""")

TRUNK_SECURITY = CfgTemplate("""\tif ($avp(trunk) == "%%{trunk}") {
%%{body}\t}
""")

TRUNK_TRANSPORT = CfgTemplate("""\t\tif ($pr != "%%{transport}") {
\t\t\txlog("L_WARN", "front.trunk_wrong_transport $avp(trunk) $pr $si\\n");
\t\t\t$var(refuse) = "403"; $var(reason) = "Forbidden"; route(REFUSE);
\t\t}
""")

TRUNK_TLS_ALIAS = "\t\tif ($pr == \"tcp\" || $pr == \"tls\") {\n\t\t\tforce_tcp_alias();\n\t\t}\n"

TRUNK_SRTP = CfgTemplate("""\t\tappend_hf("X-IVR-Srtp: %%{mode}\\r\\n");
""")

TLS_CFG = CfgTemplate("""# Rendered by ivr.front from front.tls of the YAML: the tls module profiles. Do not edit.
# TLS ends at the front; the workers are reached over UDP/TCP on the internal address.

[server:default]
method = %%{method}
verify_certificate = %%{verify}
require_certificate = %%{verify}
private_key = %%{private_key}
certificate = %%{certificate}
%%{ca_line}cipher_list = %%{ciphers}
server_name_mode = 0

[client:default]
method = %%{method}
verify_certificate = %%{client_verify}
require_certificate = %%{client_verify}
%%{ca_line}cipher_list = %%{ciphers}
""")
