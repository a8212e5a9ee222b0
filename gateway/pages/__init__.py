"""What the gateway's web pages share: the patient's page (/portal) and the professional's (/hcp).

Server-side sessions (`sessions.py`), CSRF and Origin checks (`csrf.py`), the security headers
(`headers.py`), the languages (`i18n.py`), the layout template and the style sheet: one house with one
set of rules, so that a rule fixed for one page is fixed for both.
"""
