# synapse-channel shell integration for zsh: eval "$(synapse shell-init zsh)"
__synapse_sync() {
  [[ "${__SYNAPSE_LAST_DIR:-}" == "$PWD" ]] && return 0
  __SYNAPSE_LAST_DIR=$PWD
  local vars
  vars=$(synapse shell-env --shell zsh 2>/dev/null) || return 0
  eval "$vars"
}
synapse_prompt() {
  local n
  n=$(synapse inbox --peek --count 2>/dev/null) || return 0
  (( ${n:-0} > 0 )) && printf '[syn:%s] ' "$n"
  return 0
}
autoload -Uz add-zsh-hook 2>/dev/null && add-zsh-hook precmd __synapse_sync
__synapse_sync
if (( $+functions[compdef] )); then
  eval "$(_SYNAPSE_COMPLETE=zsh_source synapse 2>/dev/null)"
fi
