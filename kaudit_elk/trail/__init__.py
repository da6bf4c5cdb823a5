"""The trail itself: audit policy and coverage, integrity verification, archive, deployment health."""
