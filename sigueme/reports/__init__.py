"""SeguriChat reports: citizens', candidates' and campaigns' reports of threats and crimes,
with text, a place and evidence files, arriving by WhatsApp or the API.

The building blocks here touch neither the database nor the police queue:

- :mod:`sigueme.reports.categories`: what a report is about, and which categories are
  electoral crimes referable to FEDE Morelos.
- :mod:`sigueme.reports.media`: which evidence files are accepted (type read from the
  content, WhatsApp's size limits), their SHA-256 on arrival, the monitors' copy.
- :mod:`sigueme.reports.metadata`: location metadata in photos and videos: read it,
  remove it losslessly.
- :mod:`sigueme.reports.storage`: where evidence is kept (local disk, S3-compatible).
- :mod:`sigueme.reports.whatsapp`: the Cloud API webhook (handshake, signature,
  notifications) and the Graph API (media, replies).
- :mod:`sigueme.reports.grouping`: one person's messages into draft reports, folios and
  the Spanish replies.
"""
