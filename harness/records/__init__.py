"""What is kept and read back: the committed latency results (`results`) and quality reports (`quality_reports`),
the operator's examples as computed here (`examples`, `showcase`) and the booth's own comparisons (`booth`), and
this machine's facts (`system_info`)."""
