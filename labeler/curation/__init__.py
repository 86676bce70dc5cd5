"""Curation: near-duplicate groups at two levels (:mod:`.duplicates`), calibrated on copies that
labeler makes of the collection's own images (:mod:`.copies`)."""
