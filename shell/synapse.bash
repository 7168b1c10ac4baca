# synapse-channel shell integration for bash: eval "$(synapse shell-init bash)"
# Exports SYN_PROJECT / SYN_IDENTITY from the project's synapse.toml when the
# working directory changes, defines synapse_prompt (inbox count), and loads
# completion for the synapse command.
__synapse_sync() {
  [ "${__SYNAPSE_LAST_DIR:-}" = "$PWD" ] && return 0
  __SYNAPSE_LAST_DIR=$PWD
  local vars
  vars=$(synapse shell-env --shell bash 2>/dev/null) || return 0
  eval "$vars"
}
synapse_prompt() {
  local n
  n=$(synapse inbox --peek --count 2>/dev/null) || return 0
  [ "${n:-0}" -gt 0 ] 2>/dev/null && printf '[syn:%s] ' "$n"
  return 0
}
case ";${PROMPT_COMMAND:-};" in
  *";__synapse_sync;"*) ;;
  *) PROMPT_COMMAND="__synapse_sync${PROMPT_COMMAND:+;$PROMPT_COMMAND}" ;;
esac
__synapse_sync
eval "$(_SYNAPSE_COMPLETE=bash_source synapse 2>/dev/null)"
