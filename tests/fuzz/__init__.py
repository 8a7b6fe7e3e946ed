"""The decoder's fuzz harness (issue 12): real parts, mutated in many families, decoded in
worker processes with a timeout and a memory cap.  ``python -m tests.fuzz`` runs it;
``test_fuzz.py`` runs a fixed slice in CI.  Modules: ``bases`` (the parts), ``bombs``
(small frames that decompress to a lot), ``mutate_bytes`` / ``mutate_xml`` (the
families), ``runner`` (workers, outcomes, the table)."""
