"""Rows on other machines, run beside the local rows: remote instances of this app (`remotes`) and a Ray cluster's
CPU kinds (`cluster`). Both are one kind of run (`runs.MachineRun`) and one kind of group (`runs.MachineGroup`)."""
