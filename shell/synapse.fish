# synapse-channel shell integration for fish: synapse shell-init fish | source
function __synapse_sync --on-event fish_prompt
    if test "$__SYNAPSE_LAST_DIR" = "$PWD"
        return 0
    end
    set -g __SYNAPSE_LAST_DIR $PWD
    synapse shell-env --shell fish 2>/dev/null | source
end
function synapse_prompt
    set -l n (synapse inbox --peek --count 2>/dev/null)
    if test -n "$n"; and test "$n" -gt 0
        printf '[syn:%s] ' $n
    end
end
__synapse_sync
_SYNAPSE_COMPLETE=fish_source synapse 2>/dev/null | source
