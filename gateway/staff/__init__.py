"""Everything staff read and write: alerts, reminders, the daily digest, the case
sheet and the e-mail commands. All mail leaves through ``mailer`` and the outbox."""
