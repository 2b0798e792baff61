# Shared by the scripts in scripts/chaos/: the cluster's members, peers by id or "leader",
# the process behind a port, and the state files that let every fault be undone exactly.
# Sourced, not run.

# Every iptables rule these scripts add carries this comment; `heal --all` removes exactly
# the rules that carry it.
CHAOS_TAG=switchboard-chaos
# Where the scripts record what they did (one file per fault).
CHAOS_STATE=${CHAOS_STATE_DIR:-/run/switchboard-chaos}
ENDPOINT=${SWITCHBOARD_ENDPOINT:-http://127.0.0.1:8001}

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

say() {
  echo "$(basename "$0"): $*"
}

need() {
  local tool package
  for tool in "$@"; do
    case $tool in
      ss | tc | ip) package=iproute2 ;;
      *) package=$tool ;;
    esac
    command -v "$tool" >/dev/null || die "needs '$tool' on PATH (apt-get install -y $package)"
  done
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "needs root (it changes iptables rules, qdiscs or other users' processes)"
}

state_dir() {
  mkdir -p "$CHAOS_STATE"
  chmod 700 "$CHAOS_STATE"
  echo "$CHAOS_STATE"
}

# curl_reason CODE: curl's exit code in words, for a one-line message of our own.
curl_reason() {
  case $1 in
    6) echo "unknown host" ;;
    7) echo "connection refused" ;;
    28) echo "no answer within the time limit" ;;
    52) echo "empty reply" ;;
    56) echo "connection reset" ;;
    *) echo "curl error $1" ;;
  esac
}

# GET a path of the endpoint; prints the body. Fails with one message naming the endpoint
# and the reason (curl's own message is not printed beside it).
api_get() {
  local path=$1 body code=0
  body=$(curl -s --max-time 3 "$ENDPOINT$path") || code=$?
  [[ $code -eq 0 ]] ||
    die "cannot reach $ENDPOINT$path ($(curl_reason "$code")); is the peer up? give another live peer with --endpoint URL"
  echo "$body"
}

# The cluster as the endpoint sees it (GET /v1/cluster). Callers take it with
# `json=$(cluster_json) || exit 1`, so that an unreachable endpoint is one message, not
# that one and a second about what could not be found in the missing answer.
cluster_json() {
  api_get /v1/cluster
}

# The current leader's id, or fails when the endpoint knows none.
leader_id() {
  local json leader
  json=$(cluster_json) || exit 1
  leader=$(jq -r '.leader // empty' <<<"$json")
  [[ -n $leader ]] || die "$ENDPOINT knows no leader right now; wait for an election or ask another peer with --endpoint"
  echo "$leader"
}

# resolve_peer ID|leader: prints the id.
resolve_peer() {
  case $1 in
    leader) leader_id ;;
    '' ) die "no peer given; use --peer ID or --peer leader" ;;
    *[!0-9]*) die "--peer takes a numeric id or 'leader', not '$1'" ;;
    *) echo "$1" ;;
  esac
}

# member_field ID FIELD: raft_addr, http_addr… of a member (voter or learner).
member_field() {
  local id=$1 field=$2 json value
  json=$(cluster_json) || exit 1
  value=$(jq <<<"$json" -r --argjson id "$id" --arg f "$field" \
    '[(.members // [])[], (.learners // [])[]] | map(select(.id == $id)) | first | .[$f] // empty')
  [[ -n $value ]] || die "peer $id is not a member according to $ENDPOINT (see: curl -s $ENDPOINT/v1/cluster)"
  echo "$value"
}

# The raft ports of every member but ID, comma-separated.
other_raft_ports() {
  local id=$1 json
  json=$(cluster_json) || exit 1
  jq <<<"$json" -r --argjson id "$id" \
    '[(.members // [])[], (.learners // [])[]] | map(select(.id != $id) | .raft_addr | split(":") | last) | join(",")'
}

# pid_on_port PORT: the pid of the process listening on TCP PORT (ss -ltnp), or nothing.
pid_on_port() {
  ss -Hltnp "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}

# The pid of the peer whose raft address is ADDR; fails with what to check.
peer_pid() {
  local addr=$1 pid
  pid=$(pid_on_port "${addr##*:}")
  [[ -n $pid ]] || die "nothing listens on ${addr} (the peer is down?); see: ss -ltnp 'sport = :${addr##*:}'"
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == switchboard* ]] ||
    die "the process on ${addr} (pid $pid, $(cat "/proc/$pid/comm" 2>/dev/null)) is not switchboard; refusing to touch it"
  echo "$pid"
}

# ipt_add TABLE CHAIN MATCH...: inserts a rule tagged $CHAOS_TAG with target ${TARGET[@]} at
# the top of CHAIN, and appends it to the state file $STATE_FILE so that the undo deletes
# exactly it.
ipt_add() {
  local table=$1 chain=$2
  shift 2
  local rule=("$@" -m comment --comment "$CHAOS_TAG" "${TARGET[@]}")
  iptables -w -t "$table" -I "$chain" "${rule[@]}"
  printf '%s\n' "$table $chain ${rule[*]}" >>"$STATE_FILE"
}

# Deletes the rules listed in a state file (lines "TABLE CHAIN ARGS..."); a rule already
# gone is not an error.
ipt_undo_file() {
  local file=$1 table chain line
  [[ -f $file ]] || return 0
  while read -r table chain line; do
    [[ $table == '#'* || -z $table || $table == cgroup ]] && continue
    # shellcheck disable=SC2086 # the rule is a list of words, written by ipt_add
    iptables -w -t "$table" -D "$chain" $line 2>/dev/null || true
  done <"$file"
}

# Every tagged rule still present, as "TABLE RULE" with RULE as `iptables -S` prints it.
tagged_rules() {
  local table
  for table in filter mangle; do
    iptables -w -t "$table" -S | grep -- "--comment $CHAOS_TAG" | sed "s/^/$table /" || true
  done
}

# peer_matches IP PORT PID OTHERS: the peer's Raft traffic as iptables matches, one per
# line, each "in MATCH..." (packets coming to the peer) or "out MATCH..." (packets it
# sends): its raft listener both ways, and the connections it holds to the other peers'
# raft ports (OTHERS: comma-separated ports). Connections it opens later are matched by
# cgroup (peer_cgroup).
peer_matches() {
  local ip=$1 port=$2 pid=$3 others=$4 local_addr remote lport rport
  echo "in -p tcp -d $ip --dport $port"
  echo "out -p tcp -s $ip --sport $port"
  [[ -n $others ]] || return 0
  while read -r local_addr remote; do
    lport=${local_addr##*:}
    rport=${remote##*:}
    echo "out -p tcp --sport $lport --dport $rport"
    echo "in -p tcp --sport $rport --dport $lport"
  done < <(ss -Htnp state established | awk -v pid="pid=$pid," -v ports=",$others," '
    index($0, pid) { n = split($4, r, ":"); if (index(ports, "," r[n] ",")) print $3, $4 }')
}

# peer_cgroup ID PID OTHERS: moves the process into a cgroup v2 group of its own (recorded
# in $STATE_FILE.cgroup for the undo) and prints the match for the connections it opens to
# the other peers' raft ports from now on, as an "out" line. Prints nothing (and warns)
# without a writable cgroup v2 hierarchy.
peer_cgroup() {
  local id=$1 pid=$2 others=$3 cg_root cg_name original
  [[ -n $others ]] || return 0
  cg_root=$(findmnt -n -t cgroup2 -o TARGET | head -n1 || true)
  cg_name=$CHAOS_TAG-peer-$id
  if [[ -n $cg_root && -w $cg_root ]] && mkdir -p "$cg_root/$cg_name" 2>/dev/null; then
    original=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
    echo "cgroup $cg_root $cg_name ${original:-/} $pid" >"$STATE_FILE.cgroup"
    echo "$pid" >"$cg_root/$cg_name/cgroup.procs"
    echo "out -p tcp -m cgroup --path $cg_name -m multiport --dports $others"
  else
    echo "$(basename "$0"): warning: no writable cgroup v2 hierarchy; connections peer $id opens from now on to ports $others are not matched" >&2
  fi
}

# Puts a process back into the cgroup it came from and removes ours (see peer_cgroup).
peer_cgroup_undo() {
  local file=$1 cg_root cg_name original pid
  [[ -f $file ]] || return 0
  read -r _ cg_root cg_name original pid <"$file"
  if [[ -d /proc/$pid ]] && grep -qx "$pid" "$cg_root/$cg_name/cgroup.procs" 2>/dev/null; then
    echo "$pid" >"$cg_root${original%/}/cgroup.procs" 2>/dev/null || echo "$pid" >"$cg_root/cgroup.procs"
  fi
  rmdir "$cg_root/$cg_name" 2>/dev/null || say "warning: cannot remove cgroup $cg_root/$cg_name (a process still in it?)"
  rm -f "$file"
}

# Prints the comment block at the top of the calling script: its --help.
usage() {
  sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p}' "$0"
}

# option_value OPTION ARGS...: the value after OPTION, or fails saying what OPTION needs
# (a missing value, or another option where the value should be).
option_value() {
  local option=$1
  shift
  [[ $# -gt 0 && -n $1 && $1 != -* ]] || die "$option needs a value; see --help"
  echo "$1"
}

# Parses the options every script takes; leaves the rest in ARGS.
# Sets PEER (as given), ENDPOINT, UNDO, ALL.
parse_common() {
  PEER=${DEFAULT_PEER:-}
  UNDO=0
  ALL=0
  ARGS=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --endpoint) ENDPOINT=$(option_value --endpoint "${@:2}") || exit 1; shift 2 ;;
      --endpoint=*) ENDPOINT=${1#*=}; shift ;;
      --peer) PEER=$(option_value "--peer (an id or leader)" "${@:2}") || exit 1; shift 2 ;;
      --peer=*) PEER=${1#*=}; shift ;;
      --undo) UNDO=1; shift ;;
      --all) ALL=1; shift ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
  ENDPOINT=${ENDPOINT%/}
}

no_extra_args() {
  [[ ${#ARGS[@]} -eq 0 ]] || die "unknown argument '${ARGS[0]}'; see --help"
}

# The start time of a live process (field 22 of /proc/PID/stat): with the pid, it names
# one process, so an undo never signals a process that merely reused the pid. Prints
# nothing for a process that has exited, also one not yet reaped (a zombie, state Z).
# The fields are counted from the end of the command name, which may hold spaces.
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  read -r -a fields <<<"$stat"
  [[ ${fields[0]} != Z && ${fields[0]} != X ]] || return 0
  echo "${fields[19]}"
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds;
# fails naming DESCRIPTION after SECONDS.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || die "$what did not happen within ${seconds}s"
    sleep 0.1
  done
}

# save_launch PID RAFT HTTP FILE: how to start the peer again, as scripts/chaos/restart
# reads it: FILE (addresses, working directory, log, whether it had a secret),
# FILE.cmdline and FILE.env (SWITCHBOARD_* settings but the secrets, and the preloaded
# libraries of scripts/chaos/clock and disk slow with their settings, so that a skewed
# clock or a slow disk survives a restart).
save_launch() {
  local pid=$1 raft=$2 http=$3 file=$4 log
  log=$(readlink "/proc/$pid/fd/1" || true)
  [[ -f $log ]] || log=
  {
    echo "raft=$raft"
    echo "http=$http"
    echo "cwd=$(readlink "/proc/$pid/cwd")"
    echo "log=$log"
    echo "had_secret=$(tr '\0' '\n' <"/proc/$pid/environ" | grep -c '^SWITCHBOARD_CLUSTER_SECRET=' || true)"
  } >"$file.tmp"
  cp "/proc/$pid/cmdline" "$file.cmdline"
  tr '\0' '\n' <"/proc/$pid/environ" |
    grep -e '^SWITCHBOARD_' -e '^LD_PRELOAD=.*\(libfaketime\|fsync-delay\)' -e '^FAKETIME_' -e '^CHAOS_FSYNC_' |
    grep -v -e '^SWITCHBOARD_CLUSTER_SECRET=' -e '^SWITCHBOARD_ADMIN_TOKEN=' >"$file.env" || true
  mv "$file.tmp" "$file"
}

# The root qdisc handle and packet mark of scripts/chaos/latency; `heal --all` removes a
# prio or htb qdisc with this handle from lo.
CHAOS_QDISC=5ca1:
CHAOS_MARK=0x5ca1
