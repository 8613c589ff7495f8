"""The kamailio.cfg template of the front, filled by `kamailio.render` (string.Template with a `%%` delimiter,
so Kamailio's own `$var` syntax passes through untouched).

Theory of operation, in the order a request meets it:
1. Requests from the workers (dispatcher set 1, address and port) skip the outside checks.
2. Outside requests: pike flood ban (trunk addresses exempt) and scanner User-Agents are dropped silently;
   Max-Forwards (483);
   sanity (400 and friends); any X-IVR-* header is removed.
3. CANCEL, retransmissions, in-dialog requests (loose_route, both ways; BYE/CANCEL release the call's load).
4. OPTIONS to the front: 200. INVITE: source must be a trunk (permissions address file; tag = trunk
   name) else 403; `X-IVR-Trunk: <name>` added; dispatcher set 1, algorithm 10 (call load, maxload per
   worker); none free -> 503 + Retry-After.
5. Failure route: timeout marks the worker inactive (probing brings it back); timeout/408/486/5xx/600
   fail over with ds_next_dst only when a next destination exists; otherwise 503 + Retry-After.
6. A worker's own initial INVITE (bridged transfer leg, sent with the front as outbound proxy) is relayed,
   record-routed, only to a configured queue target (host:port of a queue URI); anything else from a worker 403.
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
dns=off
rev_dns=off
use_dns_cache=off
dns_try_ipv6=off
auto_aliases=no
server_signature=no
user_agent_header="User-Agent: ivr-front"
sip_warning=0
%%{listen}

####### Modules #######
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "pike.so"
loadmodule "permissions.so"
loadmodule "dispatcher.so"
%%{uac_load}
modparam("tm", "fr_timer", %%{fr_timer})
modparam("tm", "fr_inv_timer", %%{fr_inv_timer})
modparam("tm", "auto_inv_100", 1)
modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)

modparam("pike", "sampling_time_unit", %%{pike_sampling})
modparam("pike", "reqs_density_per_unit", %%{pike_density})
modparam("pike", "remove_latency", %%{pike_latency})

modparam("permissions", "address_file", "%%{address_file}")
modparam("permissions", "peer_tag_avp", "$avp(trunk)")
modparam("permissions", "load_backends", 1)

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

####### Routing #######
request_route {
\tif (ds_is_from_list("1", "2")) {
\t\t$var(from_worker) = 1;
\t} else {
\t\t$var(from_worker) = 0;
\t\troute(OUTSIDE);
\t}

\tif (is_method("CANCEL")) {
\t\tif (t_check_trans()) {
\t\t\tds_load_update();
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

\tif (is_method("OPTIONS") && uri==myself) {
%%{options_extra}\t\tsl_send_reply("200", "OK");
\t\texit;
\t}

\tif ($var(from_worker) == 1) {
\t\troute(WORKER_OUT);
\t\texit;
\t}

\tif (!is_method("INVITE")) {
\t\tappend_to_reply("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY, INFO\\r\\n");
\t\tsl_send_reply("405", "Method Not Allowed");
\t\texit;
\t}

\troute(TRUNK);
\troute(DISPATCH);
}

route[OUTSIDE] {
\t# A trunk carries every caller of its provider from one address: pike would ban it at a few calls/s.
\tif (!allow_source_address("1") && !pike_check_req()) {
\t\texit;
\t}
%%{ua_check}
\tif (!mf_process_maxfwd_header("10")) {
\t\tsl_send_reply("483", "Too Many Hops");
\t\texit;
\t}
\tif (!sanity_check("17895", "7")) {
\t\texit;
\t}
\tremove_hf_re("^[Xx]-[Ii][Vv][Rr]-");
}

route[WITHINDLG] {
\tif (loose_route()) {
\t\tif (is_method("BYE")) {
\t\t\tds_load_update();
\t\t}
\t\troute(RELAY);
\t\texit;
\t}
\tif (is_method("ACK")) {
\t\tif (t_check_trans()) {
\t\t\troute(RELAY);
\t\t}
\t\texit;
\t}
\tsl_send_reply("404", "Not Here");
\texit;
}

# A worker's own call (a bridged transfer's second leg): an initial INVITE to a configured queue target only.
route[WORKER_OUT] {
\t$var(target) = $rd + ":" + $rp;
\tif (!is_method("INVITE") || !($var(target) =~ "%%{queue_targets}")) {
\t\txlog("L_WARN", "front.worker_out_refused $rm $ru\\n");
\t\tsl_send_reply("403", "Forbidden");
\t\texit;
\t}
\tremove_hf("Route");
\trecord_route();
\troute(RELAY);
}

route[TRUNK] {
\tif (!allow_source_address("1")) {
\t\tsl_send_reply("403", "Forbidden");
\t\texit;
\t}
\tremove_hf("Route");
%%{registered}
\tappend_hf("X-IVR-Trunk: $avp(trunk)\\r\\n");
\trecord_route();
}

route[DISPATCH] {
\tif (!ds_select_dst("1", "10")) {
\t\troute(FULL);
\t}
\tt_on_failure("FAILOVER");
\tt_on_reply("WORKER_REPLY");
\troute(RELAY);
}

route[FULL] {
\tappend_to_reply("Retry-After: %%{retry_after}\\r\\n");
\tsl_send_reply("503", "Service Unavailable");
\texit;
}

route[RELAY] {
\tif (!t_relay()) {
\t\tsl_reply_error();
\t}
\texit;
}

onreply_route[WORKER_REPLY] {
\tif (is_method("INVITE") && status =~ "^2[0-9][0-9]$") {
\t\tds_load_update();
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
\t\tds_load_unset();
\t\texit;
\t}
\tif ($xavp(_dsdst_[1]=>uri) != $null && ds_next_dst()) {
\t\tt_on_failure("FAILOVER");
\t\tt_on_reply("WORKER_REPLY");
\t\troute(RELAY);
\t}
\tds_load_unset();
\tappend_to_reply("Retry-After: %%{retry_after}\\r\\n");
\tt_reply("503", "Service Unavailable");
\texit;
}
""")

OPTIONS_EXTRA = CfgTemplate("""\t\tappend_to_reply("X-IVR-Front: %%{instance}\\r\\n");
""")

UA_CHECK = CfgTemplate("""\tif ($(ua{s.tolower}) =~ "%%{pattern}") {
\t\texit;
\t}
""")

UAC_LOAD = 'loadmodule "db_text.so"\nloadmodule "uac.so"\n'

UAC_PARAMS = CfgTemplate("""modparam("uac", "reg_db_url", "text://%%{dbtext_dir}")
modparam("uac", "reg_contact_addr", "%%{contact_addr}")
modparam("uac", "reg_timer_interval", 30)
modparam("uac", "reg_retry_interval", 60)
""")

REGISTERED = CfgTemplate("""\tif ($rU == "%%{uuid}") {
\t\t$rU = $tU;
\t}
""")
