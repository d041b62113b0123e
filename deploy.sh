#!/usr/bin/env bash
# Deploy the backup and its schedules, from opts.json (parameters) and schedule.json: one backup schedule per
# database, and optionally a status (freshness) check and a restore drill per database.
# Idempotent: a second run changes no schedule; a changed cron updates its schedule; a schedule removed from
# schedule.json is deleted. Every input is checked before anything changes. See docs/deploy.md.
#
#   ./deploy.sh [--dry-run] [--uninstall]
#
#   --dry-run     print the commands that would change the deployment, run only read-only queries (get/list)
#   --uninstall   remove everything this script created (schedules, action and package, or job and secret)
#
# DEPLOY_TARGET          wsk (Apache OpenWhisk, default), ibmcloud-fn (same verbs via `ibmcloud fn`), code-engine
# OPTS_FILE              parameters bound to every run (default opts.json; holds secrets, never printed)
# SCHEDULE_FILE          default schedule.json: {"databases": {"mydb": "5 0 * * *", "otherdb": null}, null = staggered,
#                          "status": {"cron": "0 7 * * *", "databases": "*", "max_age_hours": 26},
#                          "drills": {"mydb": "0 3 * * 0", "otherdb": null}}, null = staggered on Sunday
# OpenWhisk:
#   PACKAGE_NAME, ACTION_NAME   default cron and backup: the action is cron/backup
#   ACTION_TIMEOUT_MS           default 300000 (OpenWhisk's stock maximum)
#   ACTION_MEMORY_MB            default 512
#   ACTION_IMAGE                run on this image (`--docker`, built from the Dockerfile) instead of python:3.11
#   ACTION_ZIP                  a prebuilt action zip; default: scripts/build-action.sh builds dist/action.zip
#   NAME_PREFIX                 trigger and rule names start with it (default PACKAGE_NAME-ACTION_NAME): backups
#                               NAME_PREFIX-trigger--DB, the status check NAME_PREFIX-trigger---status, drills
#                               NAME_PREFIX-trigger---drill--DB (and -rule- for the rules)
# Code Engine:
#   CE_PROJECT                  select this project first (default: the CLI's current project)
#   CE_JOB, CE_SECRET           default cloudant-backup and CE_JOB-params; subscriptions are named CE_JOB--DB,
#                               CE_JOB---status and CE_JOB---drill--DB
#   CE_IMAGE                    the job's image; default: built by Code Engine from the Dockerfile (--build-source .)
#   CE_REGISTRY_SECRET          registry secret to pull CE_IMAGE with (a private registry)
#   CE_CPU, CE_MEMORY           default 1 and 4G
#   CE_MAX_EXECUTION_TIME       seconds, default 7200
#   CE_RETRY_LIMIT              default 1
set -euo pipefail
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "deploy: needs bash 4.4 or newer, this is $BASH_VERSION (macOS: brew install bash)" >&2
  exit 2
fi
shopt -s inherit_errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
  printf 'deploy: %s\n' "$*" >&2
  exit 2
}

dry_run=0
uninstall=0
for arg in "$@"; do
  case $arg in
    --dry-run) dry_run=1 ;;
    --uninstall) uninstall=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

# Paths given in the environment are relative to the caller's directory; the defaults to this one.
abspath() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
  esac
}
opts_file=opts.json
schedule_file=schedule.json
action_zip=
if [[ -n ${OPTS_FILE:-} ]]; then opts_file=$(abspath "$OPTS_FILE"); fi
if [[ -n ${SCHEDULE_FILE:-} ]]; then schedule_file=$(abspath "$SCHEDULE_FILE"); fi
if [[ -n ${ACTION_ZIP:-} ]]; then action_zip=$(abspath "$ACTION_ZIP"); fi
cd "$here"

# ---- settings, all checked before anything runs --------------------------------------------------------------

target=${DEPLOY_TARGET:-wsk}
case $target in
  wsk) cli=(wsk) ;;
  ibmcloud-fn) cli=(ibmcloud fn) ;;
  code-engine) cli=(ibmcloud ce) ;;
  *) die "DEPLOY_TARGET must be wsk, ibmcloud-fn or code-engine, got '$target'" ;;
esac
command -v "${cli[0]}" >/dev/null 2>&1 ||
  die "${cli[0]} not found on PATH: install the $([[ $target == wsk ]] && echo 'OpenWhisk CLI (wsk)' || echo 'IBM Cloud CLI (ibmcloud) and its plugin') first"
command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH: deploy.sh uses it to read JSON"
# The planner (scripts/deploy_plan.py and the backup code it checks opts.json with) needs Python 3.10 or newer.
python_version=$(python3 -c 'import sys; sys.stdout.write("%d.%d" % sys.version_info[:2])' 2>/dev/null) || python_version=unknown
if [[ ! $python_version =~ ^([0-9]+)\.([0-9]+)$ ]] || ((BASH_REMATCH[1] * 100 + BASH_REMATCH[2] < 310)); then
  die "needs Python 3.10 or newer as python3, this is $python_version ($(command -v python3)); macOS: brew install python"
fi

whole_number() { # NAME VALUE LOW: a whole number >= LOW
  if [[ $2 =~ ^[0-9]{1,9}$ ]] && ((10#$2 >= $3)); then return 0; fi
  die "$1 must be a whole number >= $3, got '$2'"
}
openwhisk_name() { # NAME VALUE: an OpenWhisk entity name
  [[ $2 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || die "$1 must be letters, digits, _ . - (not first), got '$2'"
}
code_engine_name() { # NAME VALUE: a Code Engine resource name
  [[ $2 =~ ^[a-z]([a-z0-9-]{0,51}[a-z0-9])?$ ]] || die "$1 must be lowercase letters, digits and -, at most 53, got '$2'"
}

if [[ $target == code-engine ]]; then
  job=${CE_JOB:-cloudant-backup}
  secret=${CE_SECRET:-$job-params}
  code_engine_name CE_JOB "$job"
  code_engine_name CE_SECRET "$secret"
  cpu=${CE_CPU:-1}
  memory=${CE_MEMORY:-4G}
  max_execution_time=${CE_MAX_EXECUTION_TIME:-7200}
  retry_limit=${CE_RETRY_LIMIT:-1}
  whole_number CE_MAX_EXECUTION_TIME "$max_execution_time" 1
  whole_number CE_RETRY_LIMIT "$retry_limit" 0
  [[ $cpu =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CE_CPU must be a number of vCPUs like 1 or 0.5, got '$cpu'"
  [[ $memory =~ ^[0-9]+(\.[0-9]+)?[GM]$ ]] || die "CE_MEMORY must be like 4G or 512M, got '$memory'"
  subscription_prefix="$job--"
  if [[ -n ${CE_IMAGE:-} ]]; then image=(--image "$CE_IMAGE"); else image=(--build-source . --build-strategy dockerfile); fi
  if [[ -n ${CE_REGISTRY_SECRET:-} ]]; then image+=(--registry-secret "$CE_REGISTRY_SECRET"); fi
else
  package=${PACKAGE_NAME:-cron}
  openwhisk_name PACKAGE_NAME "$package"
  openwhisk_name ACTION_NAME "${ACTION_NAME:-backup}"
  action="$package/${ACTION_NAME:-backup}"
  timeout_ms=${ACTION_TIMEOUT_MS:-300000}
  memory_mb=${ACTION_MEMORY_MB:-512}
  whole_number ACTION_TIMEOUT_MS "$timeout_ms" 100
  whole_number ACTION_MEMORY_MB "$memory_mb" 128
  name_prefix=${NAME_PREFIX:-$package-${ACTION_NAME:-backup}}
  openwhisk_name NAME_PREFIX "$name_prefix"
  trigger_prefix="$name_prefix-trigger--"
  rule_prefix="$name_prefix-rule--"
  if [[ -n ${ACTION_IMAGE:-} ]]; then runtime=(--docker "$ACTION_IMAGE"); else runtime=(--kind python:3.11); fi
  if [[ -n $action_zip && ! -f $action_zip ]]; then die "ACTION_ZIP $action_zip does not exist"; fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- helpers ---------------------------------------------------------------------------------------------------

plan() { python3 "$here/scripts/deploy_plan.py" "$@"; }

# A command as a shell would read it back: words that need it in single quotes.
show() {
  local out="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=" $arg"
    else
      out+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "${out# }"
}

# Run a command that changes the deployment; --dry-run prints it instead. Arguments never hold a secret value.
change() {
  if ((dry_run)); then
    show "$@"
  else
    printf '+ %s\n' "$(show "$@")" >&2
    "$@"
  fi
}

# What happened, for the log (in a dry run: a shell comment among the commands).
say() {
  if ((dry_run)); then printf '# %s\n' "$*"; else printf 'deploy: %s\n' "$*" >&2; fi
}

# Does it exist? Read-only, so it runs in a dry run too. A failed `get` that hid another problem (auth, network)
# fails again, visibly, on the create that follows.
exists() { "$@" >/dev/null 2>&1; }

# Names (and last column, e.g. rule status) of listed entities whose names start with PREFIX.
matching() { # PREFIX, list output on stdin
  local name last
  while IFS=$'\t' read -r name last; do
    if [[ $name == "$1"* ]]; then printf '%s\t%s\n' "$name" "$last"; fi
  done < <(plan rows)
}

# This deployment's triggers or rules (KIND PREFIX), every page of the list.
openwhisk_list() {
  local kind=$1 prefix=$2 skip=0 page
  while :; do
    page=$("${cli[@]}" "$kind" list --limit 200 --skip "$skip")
    matching "$prefix" <<<"$page"
    if (($(grep -c '^/' <<<"$page" || true) < 200)); then break; fi
    skip=$((skip + 200))
  done
}

# ---- OpenWhisk: package, action, one alarm trigger and one rule per schedule -----------------------------------
# The planner's rows (one per backup, the status check, each drill) all carry trigger_prefix/rule_prefix, so the
# listing below finds every one of them: what is listed but not planned is deleted, as --uninstall deletes all.

openwhisk_deploy() {
  local plan_rows rows row trigger rule cron payload state relink out zip listed_triggers listed_rules added
  local params_file=$tmp/bound-params.json
  plan_rows=$(plan check "$target" "$opts_file" "$schedule_file" "$trigger_prefix" "$rule_prefix") || exit 2
  mapfile -t rows <<<"$plan_rows"
  listed_triggers=$(openwhisk_list trigger "$trigger_prefix")
  listed_rules=$(openwhisk_list rule "$rule_prefix")
  local -A triggers=() rules=() wanted=()
  while IFS=$'\t' read -r trigger _; do [[ -z $trigger ]] || triggers[$trigger]=1; done <<<"$listed_triggers"
  while IFS=$'\t' read -r rule state; do [[ -z $rule ]] || rules[$rule]=$state; done <<<"$listed_rules"

  zip=${action_zip:-dist/action.zip}
  if [[ -z $action_zip ]]; then change scripts/build-action.sh "$zip"; fi
  # The bound parameters: opts.json, plus IAM_TOKEN_URL and DISABLE_TLS_VERIFY at their defaults when it has
  # neither (a private temp file, like Code Engine's env file): `final` protects only what is bound.
  if ((dry_run)); then added=$(plan param-file "$opts_file" -); else added=$(plan param-file "$opts_file" "$params_file"); fi
  say "bound parameters: $opts_file${added:+, and ${added//$'\n'/, } at their defaults}"
  change "${cli[@]}" package update "$package"
  # --param-file replaces every bound parameter: always the whole file. provide-api-key lets the action
  # invoke itself (CONTINUE_ASYNC: finish a big backup over several activations; CLOUDANT_DB="*": fan out).
  # final: no invocation or trigger can override a bound parameter (send the IAM keys to another IAM_TOKEN_URL,
  # point CLOUDANT_URL or COS_ENDPOINT elsewhere); each trigger still gives CLOUDANT_DB (a status or drill trigger
  # also OPERATION, and MAX_AGE_HOURS), which the planner makes sure opts.json does not bind.
  change "${cli[@]}" action update "$action" "$zip" "${runtime[@]}" --timeout "$timeout_ms" --memory "$memory_mb" \
    --param-file "$params_file" --annotation provide-api-key true --annotation final true

  for row in "${rows[@]}"; do
    IFS=$'\t' read -r trigger rule cron payload <<<"$row"
    wanted[$trigger]=1
    wanted[$rule]=1
    relink=0
    # A feed trigger must be created with --feed: `trigger update` on a missing one makes a trigger that never fires.
    if out=$("${cli[@]}" trigger get "$trigger" 2>/dev/null); then
      state=$(plan trigger-state "$cron" "$payload" <<<"$out")
    else
      state=missing
    fi
    case $state in
      same) say "unchanged: $trigger ($cron)" ;;
      missing | plain)
        if [[ $state == plain ]]; then change "${cli[@]}" trigger delete "$trigger"; fi
        change "${cli[@]}" trigger create "$trigger" --feed /whisk.system/alarms/alarm \
          --param cron "$cron" --param trigger_payload "$payload"
        relink=1
        ;;
      *) change "${cli[@]}" trigger update "$trigger" --param cron "$cron" --param trigger_payload "$payload" ;;
    esac
    # A rule lives in its trigger's record: a new trigger needs its rule written again. OpenWhisk then takes the
    # rule's status from that record, which a new trigger does not have: the rule comes back inactive. So every
    # written rule is enabled too (harmless on an active one).
    if ((relink)) || [[ -z ${rules[$rule]:-} ]]; then
      change "${cli[@]}" rule update "$rule" "$trigger" "$action"
      change "${cli[@]}" rule enable "$rule"
    elif [[ ${rules[$rule]} == inactive ]]; then
      change "${cli[@]}" rule enable "$rule"
    fi
  done

  for rule in $(printf '%s\n' "${!rules[@]}" | sort); do
    if [[ -z ${wanted[$rule]:-} ]]; then change "${cli[@]}" rule delete --disable "$rule"; fi
  done
  for trigger in $(printf '%s\n' "${!triggers[@]}" | sort); do
    if [[ -z ${wanted[$trigger]:-} ]]; then change "${cli[@]}" trigger delete "$trigger"; fi
  done
}

openwhisk_uninstall() {
  local name _ listed_rules listed_triggers
  listed_rules=$(openwhisk_list rule "$rule_prefix")
  listed_triggers=$(openwhisk_list trigger "$trigger_prefix")
  while IFS=$'\t' read -r name _; do
    [[ -z $name ]] || change "${cli[@]}" rule delete --disable "$name"
  done <<<"$listed_rules"
  while IFS=$'\t' read -r name _; do
    [[ -z $name ]] || change "${cli[@]}" trigger delete "$name"
  done <<<"$listed_triggers"
  if exists "${cli[@]}" action get "$action"; then change "${cli[@]}" action delete "$action"; fi
  if exists "${cli[@]}" package get "$package"; then
    change "${cli[@]}" package delete "$package" || say "kept package $package: it still holds other entities"
  fi
}

# ---- Code Engine: secret, job, one cron subscription per schedule ------------------------------------------------
# Each subscription's --data (CE_DATA) gives the run its CLOUDANT_DB, and for the status check and drills its
# OPERATION: backup.job lays it over the secret's variables.

# Selecting the project changes only the CLI's target, so a dry run does it too (its queries need it).
select_project() {
  if [[ -n ${CE_PROJECT:-} ]]; then
    printf '+ %s\n' "$(show ibmcloud ce project select --name "$CE_PROJECT")" >&2
    ibmcloud ce project select --name "$CE_PROJECT" >&2
  fi
}

code_engine_deploy() {
  local plan_rows rows row name cron payload out stale key env_file=$tmp/params.env run_args listed
  plan_rows=$(plan check code-engine "$opts_file" "$schedule_file" "$subscription_prefix" -) || exit 2
  mapfile -t rows <<<"$plan_rows"
  select_project
  listed=$(ibmcloud ce subscription cron list)
  local -A existing=() wanted=()
  while IFS=$'\t' read -r name _; do [[ -z $name ]] || existing[$name]=1; done <<<"$(matching "$subscription_prefix" <<<"$listed")"

  # Secret values go through a private temp file, never a command line.
  if ((!dry_run)); then plan env-file "$opts_file" "$env_file"; fi
  if out=$(ibmcloud ce secret get --name "$secret" --output json 2>/dev/null); then
    change ibmcloud ce secret update --name "$secret" --from-env-file "$env_file"
    stale=()
    while IFS= read -r key; do [[ -z $key ]] || stale+=(--rm "$key"); done <<<"$(plan stale-keys "$opts_file" <<<"$out")"
    if ((${#stale[@]})); then change ibmcloud ce secret update --name "$secret" "${stale[@]}"; fi
  else
    change ibmcloud ce secret create --name "$secret" --from-env-file "$env_file"
  fi

  run_args=(--command python --argument=-m --argument=backup.job --env-from-secret "$secret" --cpu "$cpu"
    --memory "$memory" --maxexecutiontime "$max_execution_time" --retrylimit "$retry_limit")
  if exists ibmcloud ce job get --name "$job"; then
    change ibmcloud ce job update --name "$job" "${image[@]}" "${run_args[@]}"
  else
    change ibmcloud ce job create --name "$job" "${image[@]}" "${run_args[@]}"
  fi

  for row in "${rows[@]}"; do
    IFS=$'\t' read -r name _ cron payload <<<"$row"
    wanted[$name]=1
    if out=$(ibmcloud ce subscription cron get --name "$name" --output json 2>/dev/null); then
      if [[ $(plan subscription-state "$cron" "$payload" <<<"$out") == same ]]; then
        say "unchanged: $name ($cron)"
      else
        change ibmcloud ce subscription cron update --name "$name" --destination-type job --destination "$job" \
          --schedule "$cron" --data "$payload"
      fi
    else
      change ibmcloud ce subscription cron create --name "$name" --destination-type job --destination "$job" \
        --schedule "$cron" --data "$payload"
    fi
  done
  for name in $(printf '%s\n' "${!existing[@]}" | sort); do
    if [[ -z ${wanted[$name]:-} ]]; then change ibmcloud ce subscription cron delete --name "$name" --force; fi
  done
}

code_engine_uninstall() {
  local name _ listed
  select_project
  listed=$(ibmcloud ce subscription cron list)
  while IFS=$'\t' read -r name _; do
    [[ -z $name ]] || change ibmcloud ce subscription cron delete --name "$name" --force
  done <<<"$(matching "$subscription_prefix" <<<"$listed")"
  if exists ibmcloud ce job get --name "$job"; then change ibmcloud ce job delete --name "$job" --force; fi
  if exists ibmcloud ce secret get --name "$secret"; then change ibmcloud ce secret delete --name "$secret" --force; fi
}

# ---- main ------------------------------------------------------------------------------------------------------

if ((dry_run)); then
  printf '# deploy.sh --dry-run (%s): read-only queries ran; these commands would change the deployment:\n' "$target"
fi
case $target:$uninstall in
  code-engine:0) code_engine_deploy ;;
  code-engine:1) code_engine_uninstall ;;
  *:0) openwhisk_deploy ;;
  *:1) openwhisk_uninstall ;;
esac
if ((!dry_run)); then say "done"; fi
