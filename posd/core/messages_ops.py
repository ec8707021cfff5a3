"""What store IT reads, in the lane's language: the status page (GET /) and `posd doctor`.

Catalog data only (posd.core.messages merges it into CATALOGS): device
kinds, states and reasons, the health issues by code, durations and sizes,
and every finding `posd doctor` can report. English is the fallback; a
placeholder such as ``{path}`` is filled by the caller.
"""

from __future__ import annotations

OPS: dict[str, dict[str, str]] = {
    "en": {
        # the status page
        "status.title": "posd: lane status",
        "status.ok": "Everything works",
        "status.degraded": "Working, with warnings",
        "status.error": "Needs attention",
        "status.problems": "What is wrong",
        "status.devices": "Devices",
        "status.sync": "Sync with central",
        "status.online": "online",
        "status.offline": "offline",
        "status.auth_failed": "central refused our credentials",
        "status.pending": "events waiting",
        "status.oldest": "oldest waiting",
        "status.quarantined": "refused by central",
        "status.token_replays": "member tokens used at another lane (flagged by central)",
        "status.birthday_repeats": "birthday bonuses given at another lane first (flagged by central)",
        "status.last_success": "last successful sync",
        "status.last_error": "last error",
        "status.clock_skew": "clock difference to central",
        "status.cache": "Members and program",
        "status.members": "members cached",
        "status.program": "program version",
        "status.synced": "members refreshed",
        "status.stale": "out of date",
        "status.device": "device",
        "status.kind": "kind",
        "status.url": "URL",
        "status.state": "state",
        "status.reason": "reason",
        "status.since": "since",
        "status.paper": "paper",
        "status.none": "none",
        "status.never": "never",
        "status.lane": "Store {store}, lane {lane}",
        "status.last_sale": "last sale",
        "status.storage": "free disk",
        "status.version": "posd {version}, running since {started}",
        "status.updated": "updated {time}; this page refreshes itself",
        "kind.scanner": "scanner",
        "kind.printer": "printer",
        "kind.card_reader": "card reader",
        "state.closed": "closed",
        "state.idle": "ready",
        "state.busy": "busy",
        "state.error": "error",
        "reason.offline": "offline (unplugged, switched off or unreachable)",
        "reason.paper_out": "out of paper",
        "reason.paper_near_end": "paper running low",
        "reason.cover_open": "cover open",
        "reason.printer_error": "printer error (see its manual)",
        "reason.io_error": "input/output error (see the log)",
        "reason.service_unavailable": "pcscd is not running",
        "paper.ok": "paper OK",
        "paper.near_end": "paper running low",
        "paper.out": "out of paper",
        "issue.device_error": "{subject}: {reason}",
        "issue.paper_near_end": "{subject}: paper running low, change the roll soon",
        "issue.program_missing": "No loyalty program from central yet: sales cannot be recorded",
        "issue.currency_not_earned": "Program {version} earns on {earned}, not on this lane's {currency}: "
                                     "sales in {currency} cannot be recorded",
        "issue.ledger_unwritable": "ledger.db cannot be written: sales cannot be recorded",
        "issue.print_worker_stopped": "The print worker stopped: slips cannot print",
        "issue.central_unreachable": "Central is unreachable; sales are kept and sent later",
        "issue.central_error": "Central answers with an error; sales are kept and sent later",
        "issue.central_auth_failed": "Central refused the lane's credentials: check the store secret",
        "issue.identity_conflict": "Central holds another history for this lane; sync stopped (ledger.db restored "
                                   "from an old copy, or another till running as this lane?): docs/install.md, "
                                   "Restore",
        "issue.program_refused": "Central's program {version} was refused, the program in force stays: {detail}",
        "issue.quarantined": "{count} event(s) refused by central for good",
        "issue.sync_backlog": "{count} event(s) waiting for central, the oldest for {age}",
        "issue.cache_stale": "Members not refreshed from central for over a day",
        "issue.cache_never": "Members never loaded from central yet",
        "issue.disk_low": "Only {free} free on the storage disk (minimum {min})",
        "unit.s": "{n} s",
        "unit.min": "{n} min",
        "unit.h": "{n} h",
        "unit.d": "{n} d",
        # posd doctor
        "doctor.title": "posd doctor: {path}",
        "doctor.col.area": "area",
        "doctor.col.status": "result",
        "doctor.col.finding": "finding",
        "doctor.result.ok": "ok",
        "doctor.result.warn": "warning",
        "doctor.result.fail": "FAIL",
        "doctor.result.skip": "skipped",
        "doctor.summary.ok": "Nothing wrong found ({warnings} warning(s)).",
        "doctor.summary.fail": "{failures} problem(s) found, {warnings} warning(s).",
        "doctor.area.config": "config",
        "doctor.area.files": "files",
        "doctor.area.storage": "storage",
        "doctor.area.devices": "devices",
        "doctor.area.central": "central",
        "doctor.area.sync": "sync",
        "doctor.area.cache": "cache",
        "doctor.area.daemon": "daemon",
        "doctor.area.unit": "unit",
        "doctor.what.store_secret_file": "store secret",
        "doctor.what.client_cert": "client certificate",
        "doctor.what.client_key": "client key",
        "doctor.what.token_file": "API token",
        "doctor.config.ok": "{path} is valid: store {store}, lane {lane}",
        "doctor.config.error": "{where}: {message}",
        "doctor.config.line": "(line {line})",
        "doctor.config.unreadable_by": "{user} cannot read {path} (owner {owner}, group {group}, mode {mode}): "
                                       "posd run as {user} cannot start",
        "doctor.config.secret_readable": "{path} holds the store secret (store_secret) and others can read it "
                                         "(mode {mode}): chmod 640 {path}, or move the secret to store_secret_file",
        "doctor.config.unreadable": "cannot read {path}: {message}",
        "doctor.config.denied": "cannot read {path} as {runner}: permission denied; run posd doctor as root or "
                                "the posd user",
        "doctor.config.file": "{message}",
        "config.unknown_key": "unknown key (check the spelling; see config/posd.example.toml)",
        "config.missing": "required key is missing",
        "config.bool_type": "must be true or false, without quotes (got {got})",
        "config.int_type": "must be a whole number, without quotes (got {got})",
        "config.float_type": "must be a number, without quotes (got {got})",
        "config.string_type": "must be text in quotes (got {got})",
        "config.tuple_type": "must be a list in brackets, such as [\"...\"] (got {got})",
        "config.model_type": "must be a table of keys (got {got})",
        "config.model_attributes_type": "must be a table of keys (got {got})",
        "config.dict_type": "must be a table of keys (got {got})",
        "config.choice": "must be one of {expected}",
        "config.choice_number": "must be one of {expected}, a number without quotes",
        "config.got.str": "text",
        "config.got.int": "a number",
        "config.got.float": "a number",
        "config.got.bool": "true/false",
        "config.got.list": "a list",
        "config.got.dict": "a table",
        "doctor.skipped": "{what}: not checked ({reason})",
        "doctor.check.tcp": "TCP",
        "doctor.check.tls": "TLS",
        "doctor.check.signature": "signed request",
        "doctor.check.clock": "clock",
        "doctor.clock.behind": "behind",
        "doctor.clock.ahead": "ahead of",
        "doctor.skipped.config": "the config is not valid",
        "doctor.skipped.config_unread": "the config could not be read",
        "doctor.skipped.central": "central cannot be reached",
        "doctor.files.ok": "{what} {path}: readable by {user}, mode {mode}",
        "doctor.files.missing": "{what} {path} does not exist",
        "doctor.files.not_file": "the {what} {path} is not a file (a folder?): name the file in {config_key}",
        "doctor.files.unreadable": "{user} cannot read the {what} {path} (owner {owner}, group {group}, mode {mode})",
        "doctor.files.mode": "the {what} {path} can be read by others (mode {mode}): chmod 600 {path}",
        "doctor.files.invalid": "the {what} {path} is not usable: {message}",
        "doctor.files.gone": "{what} {path} is gone while posd runs: the POS cannot read the token posd "
                             "takes; restart posd (it makes a new one) and give the POS the new token",
        "doctor.files.not_yet": "{what} {path} does not exist yet: posd creates it at its first start",
        "doctor.files.denied": "cannot look at the {what} {path} as {runner}: permission denied; run posd "
                               "doctor as root or the posd user",
        "doctor.storage.dir_ok": "{path}: {user} may write there",
        "doctor.storage.dir_missing": "{path} does not exist yet: posd creates it at its first start",
        "doctor.storage.dir_unwritable": "{user} cannot write to {path} (owner {owner}, group {group}, mode {mode})",
        "doctor.storage.dir_unmakable": "{path} does not exist, and {user} cannot make it: {above} is not theirs to "
                                        "write (owner {owner}, group {group}, mode {mode})",
        "doctor.storage.dir_refused": "{path} cannot be used: the kernel makes nothing in {folder} ({reason}); "
                                      "set storage.dir to a folder on a disk (/var/lib/posd as shipped)",
        "doctor.storage.disk_ok": "{free} free of {total} on the storage disk ({mount})",
        "doctor.storage.disk_low": "the storage disk ({mount}) is nearly full: {free} free of {total} (minimum "
                                   "{min}); sales stop being recorded when it is full",
        "doctor.storage.disk_full": "the storage disk ({mount}) is full: {free} free of {total}; a sale, return "
                                    "or redemption that no longer fits is refused (503 storage_full): free space on "
                                    "it, and posd records again at once",
        "doctor.storage.db_ok": "{file}: {size}, integrity check ok",
        "doctor.storage.db_missing": "{file} does not exist yet: posd creates it at its first start",
        "doctor.storage.dir_denied": "cannot look into {path} as {runner}: permission denied; run posd doctor "
                                     "as root or the posd user",
        "doctor.storage.db_denied": "cannot read {file} as {runner}: {reason}; run posd doctor as root or the "
                                    "posd user (its integrity was not checked)",
        "doctor.storage.dir_frozen": "{path}: no one may write there, root included ({reason}): posd cannot start",
        "doctor.storage.dir_not_folder": "{path} is not a folder: storage.dir names the folder posd keeps ledger.db "
                                         "and cache.db in",
        "doctor.storage.db_folder": "{file} was not checked: posd cannot use its folder (above)",
        "doctor.storage.db_unwritable": "{user} cannot write to {path}: {reason}; posd refuses to start",
        "doctor.why.read_only": "its file system is mounted read-only: remount it read-write",
        "doctor.why.immutable": "it is immutable or append-only: chattr -i -a",
        "doctor.why.mode": "owner {owner}, group {group}, mode {mode} (make posd's user its owner)",
        "doctor.storage.db_unreadable": "cannot read {file} ({reason}): its integrity was not checked; nothing "
                                        "says it is damaged: run posd doctor again",
        "doctor.storage.ledger_corrupt": "ledger.db failed its integrity check ({problem}): posd refuses to start "
                                         "on it; restore the last backup (docs/install.md, Backup and restore)",
        "doctor.storage.ledger_empty": "ledger.db is empty (0 bytes): this lane's history was lost or its first "
                                       "start never finished; posd refuses to start on it. Restore the last backup "
                                       "(docs/install.md, Backup and restore); on a lane that never recorded "
                                       "anything, delete the file",
        "doctor.storage.ledger_write_back_cut": "ledger.db is missing and {spare} is there: a write-back posd began "
                                                "(ledger.db deleted while it ran) was cut short and the copy does not "
                                                "pass its integrity check; posd refuses to start. Restore ledger.db "
                                                "from the last backup",
        "doctor.storage.ledger_wal_orphan": "ledger.db is missing but {wal} ({bytes} bytes) is there: the newest "
                                            "commits without their ledger; posd refuses to start. Restore ledger.db "
                                            "beside it from the last backup, or move {wal} aside to start a new "
                                            "lane history",
        "doctor.storage.ledger_other_lane": "ledger.db holds the history of store {store} lane {lane}, but the config "
                                            "says store {config_store} lane {config_lane}; posd refuses to mix lane "
                                            "histories. Correct lane.store_id and lane.lane_id, or give this lane "
                                            "its own ledger",
        "doctor.storage.ledger_newer": "ledger.db was written by a newer posd (migrations {migrations}); this posd "
                                       "refuses to touch it. Install that version again",
        "doctor.storage.ledger_not_file": "ledger.db is not a file (a folder made by mistake?): posd refuses to "
                                          "start. Move it away (and put ledger.db back from the last backup, if "
                                          "this lane had one)",
        "doctor.storage.ledger_foreign": "ledger.db is not a posd ledger: it holds another database's tables "
                                         "({tables}); posd refuses to start on it. Put this lane's ledger.db back "
                                         "from the last backup (docs/install.md, Backup and restore), or move the "
                                         "file aside to start a new lane history",
        "doctor.storage.cache_corrupt": "cache.db is damaged ({problem}): posd moves it aside and rebuilds it "
                                        "from central at its next start (systemctl restart posd)",
        "doctor.storage.growth": "ledger.db grows about {rate} a day ({events} events in the last {window})",
        "doctor.storage.growth_full": "ledger.db grows about {rate} a day: the disk is full in about {days} days",
        "doctor.devices.ok": "{name} ({kind}): {path} is there and {user} may open it (owner {owner}, "
                             "group {group}, mode {mode}; {rule})",
        "doctor.devices.missing": "{name} ({kind}): {path} does not exist: unplugged, or a wrong URL "
                                  "(`posd devices` lists what is plugged in)",
        "doctor.devices.denied": "{name} ({kind}): {user} may not open {path} (owner {owner}, group {group}, "
                                 "mode {mode}; {rule})",
        "doctor.devices.rule": "udev rule {rule}",
        "doctor.devices.no_rule": "no udev rule names it: docs/install.md, Devices and their groups",
        "doctor.devices.plain_file": "a file, not a device: no udev rule is needed",
        "doctor.devices.virtual": "{name} ({kind}): {url} is a virtual device posd makes when it runs",
        "doctor.devices.pty_denied": "{name} ({kind}): {user} may not make the link {path} in {folder} (owner "
                                     "{owner}, group {group}, mode {mode}): this scanner cannot start; name a "
                                     "path in a folder {user} may write",
        "doctor.devices.pty_blocked": "{name} ({kind}): {path} is {what}, not the link posd makes to its "
                                      "virtual device: posd does not replace it, so this scanner cannot start; "
                                      "move it away or name another path in the config",
        "doctor.pty_holder.file": "a file",
        "doctor.pty_holder.folder": "a folder",
        "doctor.pty_holder.other": "a device node, pipe or socket",
        "doctor.devices.network": "{name} ({kind}): {url} is a network device",
        "doctor.devices.printer_ready": "{name}: the printer answers its status (DLE EOT): ready, {paper}",
        "doctor.devices.printer_problem": "{name}: the printer answers its status (DLE EOT): {reason}",
        "doctor.devices.printer_silent": "{name}: the printer does not answer its status (DLE EOT); posd sees "
                                         "only transport errors",
        "doctor.devices.printer_fell_silent": "{name}: the printer answered its status (DLE EOT) before and is "
                                              "silent now: switched off, stalled, or not listening behind its print "
                                              "server; posd holds its slips until it answers. A printer replaced by a "
                                              "model that never answers: add status=0 to its URL",
        "doctor.devices.printer_unreachable": "{name}: cannot reach the printer at {url}: {reason}",
        "doctor.devices.printer_none": "no printer configured: no slips",
        "doctor.devices.preview": "{name}: slips are kept as files in {path}",
        "doctor.devices.preview_denied": "{name}: {user} cannot write slips to {path}",
        "doctor.devices.file_is_folder": "{name}: {path} is a folder: a file:// printer writes to a file, a FIFO "
                                         "or a device (preview:// keeps slips in a folder)",
        "doctor.devices.preview_not_folder": "{name}: {file} is a file, not a folder: posd cannot keep slips in "
                                             "{path} (preview:// names a folder; move the file or change the URL)",
        "doctor.devices.unseen": "{name} ({kind}): cannot look at {path} as {runner}: permission denied; run "
                                 "posd doctor as root or the posd user",
        "doctor.devices.pcsc_ok": "{name}: pcscd answers; reader {reader} is there",
        "doctor.devices.pcsc_missing": "{name}: pcscd answers but no reader matches {reader} (readers: {readers})",
        "doctor.devices.pcsc_down": "{name}: pcscd does not answer ({message}): apt-get install pcscd; "
                                    "systemctl enable --now pcscd",
        "doctor.devices.reported": "{name}: the running posd reports it {state}{reason}",
        "doctor.central.dns_ok": "{host} resolves to {addresses}",
        "doctor.central.dns_failed": "{host} does not resolve: {message}",
        "doctor.central.tcp_ok": "{host}:{port} accepts a connection ({ms} ms)",
        "doctor.central.tcp_failed": "cannot connect to {host}:{port}: {message}",
        "doctor.central.tls_ok": "TLS {version}; certificate valid until {until} ({days} days left)",
        "doctor.central.tls_expiring": "TLS certificate of central expires in {days} days ({until})",
        "doctor.central.tls_failed": "TLS with {host} failed: {message}",
        "doctor.central.tls_plain": "plain http:// without TLS (acceptable on a trusted network only)",
        "doctor.central.tls_unverified": "TLS certificate not verified (verify_tls = false)",
        "doctor.central.signature_ok": "central accepted the lane's signed request (store {store}, lane {lane})",
        "doctor.central.signature_refused": "central refused the lane's signature (HTTP {status} {code}): check "
                                            "the store secret, the store id and the clock",
        "doctor.central.signature_error": "central did not answer the signed request: {message}",
        "doctor.central.clock_ok": "the lane's clock is {apart} s {side} central's",
        "doctor.central.clock_skew": "the lane's clock is {apart} s {side} central's (limit {limit} s): "
                                     "turn on time sync (timedatectl set-ntp true)",
        "doctor.central.clock_unknown": "central sent no Date header: the clock difference is unknown",
        "doctor.sync.ok": "{pending} event(s) waiting for central{oldest}; {quarantined} refused for good",
        "doctor.sync.identity_moved": "this lane syncs as {sync_lane}: central already held another history "
                                      "under {lane} when this ledger first reached it. After a lost ledger.db "
                                      "that is expected; if another till is also set up as store {store} lane "
                                      "{lane}, give each till its own lane.lane_id",
        "doctor.sync.backlog": "{pending} event(s) waiting for central, the oldest for {age}",
        "doctor.sync.quarantined": "{quarantined} event(s) refused by central for good (quarantined): "
                                   "GET /v1/health shows why",
        "doctor.cache.ok": "{members} members, refreshed {age} ago; program {version}",
        "doctor.cache.stale": "members last refreshed {age} ago (out of date after a day)",
        "doctor.cache.empty": "no members yet: posd has not pulled from central",
        "doctor.cache.no_program": "no loyalty program yet: sales are refused until posd pulls one",
        "doctor.cache.currency": "the program {version} earns on {earned}, not on this lane's {currency} "
                                 "([lane] currency): sales in {currency} are refused (unsupported_currency)",
        "doctor.daemon.ok": "posd {version} answers at {url}: {status}, up {uptime}",
        "doctor.daemon.down": "posd does not answer at {url} ({message}): systemctl status posd; "
                              "journalctl -u posd -p warning",
        "doctor.daemon.other_lane": "the posd answering at {url} is store {store} lane {lane}, not this config's "
                                    "store {our_store} lane {our_lane}: another lane's posd on this port (this "
                                    "lane's is not running, or listens elsewhere), or [lane] was changed since "
                                    "posd started (systemctl restart posd); give each lane its own [api] listen",
        "doctor.daemon.version": "the running posd is {running}, the installed one {installed}: "
                                 "systemctl restart posd",
        "doctor.daemon.issue": "posd reports: {text}",
        "doctor.unit.ok": "{unit}: systemd-analyze security exposure {score} (at most {limit})",
        "doctor.unit.exposed": "{unit}: systemd-analyze security exposure {score}, above {limit}: "
                               "a drop-in weakened the hardening? (systemctl cat posd)",
        "doctor.unit.unknown": "{unit}: systemd-analyze gave no score: {message}",
        "doctor.unit.absent": "systemd-analyze is not installed",
        "doctor.unit.no_unit": "posd.service is not installed here",
    },
    "pl": {
        "status.title": "posd: stan kasy",
        "status.ok": "Wszystko działa",
        "status.degraded": "Działa, z ostrzeżeniami",
        "status.error": "Wymaga uwagi",
        "status.problems": "Co jest nie tak",
        "status.devices": "Urządzenia",
        "status.sync": "Synchronizacja z centralą",
        "status.online": "połączona",
        "status.offline": "brak połączenia",
        "status.auth_failed": "centrala odrzuciła dane dostępowe",
        "status.pending": "zdarzeń w kolejce",
        "status.oldest": "najstarsze czeka",
        "status.quarantined": "odrzucone przez centralę",
        "status.token_replays": "kody członkowskie użyte na innej kasie (oznaczone przez centralę)",
        "status.birthday_repeats": "prezenty urodzinowe przyznane wcześniej na innej kasie (oznaczone przez centralę)",
        "status.last_success": "ostatnia udana synchronizacja",
        "status.last_error": "ostatni błąd",
        "status.clock_skew": "różnica zegara względem centrali",
        "status.cache": "Klienci i program",
        "status.members": "klientów w pamięci",
        "status.program": "wersja programu",
        "status.synced": "klienci odświeżeni",
        "status.stale": "nieaktualne",
        "status.device": "urządzenie",
        "status.kind": "rodzaj",
        "status.url": "URL",
        "status.state": "stan",
        "status.reason": "przyczyna",
        "status.since": "od",
        "status.paper": "papier",
        "status.none": "brak",
        "status.never": "nigdy",
        "status.lane": "Sklep {store}, kasa {lane}",
        "status.last_sale": "ostatnia sprzedaż",
        "status.storage": "wolne miejsce na dysku",
        "status.version": "posd {version}, działa od {started}",
        "status.updated": "stan z {time}; strona odświeża się sama",
        "kind.scanner": "skaner",
        "kind.printer": "drukarka",
        "kind.card_reader": "czytnik kart",
        "state.closed": "zamknięte",
        "state.idle": "gotowe",
        "state.busy": "zajęte",
        "state.error": "błąd",
        "reason.offline": "niedostępne (odłączone, wyłączone lub poza zasięgiem)",
        "reason.paper_out": "brak papieru",
        "reason.paper_near_end": "kończy się papier",
        "reason.cover_open": "otwarta pokrywa",
        "reason.printer_error": "błąd drukarki (zob. jej instrukcję)",
        "reason.io_error": "błąd wejścia/wyjścia (zob. dziennik)",
        "reason.service_unavailable": "usługa pcscd nie działa",
        "paper.ok": "papier jest",
        "paper.near_end": "kończy się papier",
        "paper.out": "brak papieru",
        "issue.device_error": "{subject}: {reason}",
        "issue.paper_near_end": "{subject}: kończy się papier, wymień rolkę",
        "issue.program_missing": "Brak programu lojalnościowego z centrali: sprzedaży nie można zapisać",
        "issue.currency_not_earned": "Program {version} nalicza za {earned}, nie za walutę tej kasy {currency}: "
                                     "sprzedaży w {currency} nie można zapisać",
        "issue.ledger_unwritable": "Nie można zapisać ledger.db: sprzedaży nie można zapisać",
        "issue.print_worker_stopped": "Kolejka wydruku zatrzymana: paragony lojalnościowe się nie drukują",
        "issue.central_unreachable": "Brak połączenia z centralą; sprzedaże są zapisane i zostaną wysłane później",
        "issue.central_error": "Centrala odpowiada błędem; sprzedaże są zapisane i zostaną wysłane później",
        "issue.central_auth_failed": "Centrala odrzuciła dane uwierzytelniające kasy: sprawdź sekret sklepu",
        "issue.identity_conflict": "Centrala ma inną historię tej kasy; synchronizacja wstrzymana "
                                   "(przywrócono starą kopię ledger.db albo inna kasa działa jako ta?): "
                                   "docs/install.md, Restore",
        "issue.program_refused": "Program {version} z centrali odrzucony, obowiązuje dotychczasowy: {detail}",
        "issue.quarantined": "Centrala ostatecznie odrzuciła zdarzeń: {count}",
        "issue.sync_backlog": "Zdarzeń czekających na centralę: {count}, najstarsze od {age}",
        "issue.cache_stale": "Dane klientów nie były odświeżane z centrali od ponad doby",
        "issue.cache_never": "Dane klientów nie zostały jeszcze pobrane z centrali",
        "issue.disk_low": "Na dysku zostało tylko {free} wolnego miejsca (minimum {min})",
        "unit.s": "{n} s",
        "unit.min": "{n} min",
        "unit.h": "{n} godz.",
        "unit.d": "{n} dni",
        "unit.d_one": "{n} dzień",
        "doctor.title": "posd doctor: {path}",
        "doctor.col.area": "obszar",
        "doctor.col.status": "wynik",
        "doctor.col.finding": "ustalenie",
        "doctor.result.ok": "ok",
        "doctor.result.warn": "uwaga",
        "doctor.result.fail": "BŁĄD",
        "doctor.result.skip": "pominięto",
        "doctor.summary.ok": "Nie znaleziono problemów (ostrzeżeń: {warnings}).",
        "doctor.summary.fail": "Znalezione problemy: {failures}, ostrzeżenia: {warnings}.",
        "doctor.area.config": "konfiguracja",
        "doctor.area.files": "pliki",
        "doctor.area.storage": "dane",
        "doctor.area.devices": "urządzenia",
        "doctor.area.central": "centrala",
        "doctor.area.sync": "synchronizacja",
        "doctor.area.cache": "pamięć klientów",
        "doctor.area.daemon": "usługa",
        "doctor.area.unit": "jednostka",
        "doctor.what.store_secret_file": "sekret sklepu",
        "doctor.what.client_cert": "certyfikat klienta",
        "doctor.what.client_key": "klucz klienta",
        "doctor.what.token_file": "token API",
        "doctor.config.ok": "{path} jest poprawny: sklep {store}, kasa {lane}",
        "doctor.config.error": "{where}: {message}",
        "doctor.config.line": "(wiersz {line})",
        "doctor.config.unreadable_by": "{user} nie może odczytać {path} (właściciel {owner}, grupa {group}, "
                                       "uprawnienia {mode}): posd uruchomiony jako {user} nie wystartuje",
        "doctor.config.secret_readable": "{path} zawiera sekret sklepu (store_secret) i mogą go czytać inni "
                                         "(uprawnienia {mode}): chmod 640 {path} albo przenieś sekret do "
                                         "store_secret_file",
        "doctor.config.unreadable": "nie można odczytać {path}: {message}",
        "doctor.config.denied": "nie można odczytać {path} jako {runner}: brak uprawnień; uruchom posd doctor "
                                "jako root lub użytkownik posd",
        "doctor.config.file": "{message}",
        "config.unknown_key": "nieznany klucz (sprawdź pisownię; wzór: config/posd.example.toml)",
        "config.missing": "brakuje wymaganego klucza",
        "config.bool_type": "musi być true albo false, bez cudzysłowu (jest: {got})",
        "config.int_type": "musi być liczbą całkowitą, bez cudzysłowu (jest: {got})",
        "config.float_type": "musi być liczbą, bez cudzysłowu (jest: {got})",
        "config.string_type": "musi być tekstem w cudzysłowie (jest: {got})",
        "config.tuple_type": "musi być listą w nawiasach kwadratowych, np. [\"...\"] (jest: {got})",
        "config.model_type": "musi być tabelą kluczy (jest: {got})",
        "config.model_attributes_type": "musi być tabelą kluczy (jest: {got})",
        "config.dict_type": "musi być tabelą kluczy (jest: {got})",
        "config.choice": "dozwolone wartości: {expected}",
        "config.choice_number": "dozwolone wartości: {expected}, liczba bez cudzysłowu",
        "config.got.str": "tekst",
        "config.got.int": "liczba",
        "config.got.float": "liczba",
        "config.got.bool": "true/false",
        "config.got.list": "lista",
        "config.got.dict": "tabela",
        "doctor.skipped": "{what}: nie sprawdzono ({reason})",
        "doctor.check.tcp": "TCP",
        "doctor.check.tls": "TLS",
        "doctor.check.signature": "podpisane zapytanie",
        "doctor.check.clock": "zegar",
        "doctor.clock.behind": "spóźnia się",
        "doctor.clock.ahead": "śpieszy się",
        "doctor.skipped.config": "konfiguracja jest niepoprawna",
        "doctor.skipped.config_unread": "nie udało się odczytać konfiguracji",
        "doctor.skipped.central": "centrala jest nieosiągalna",
        "doctor.files.ok": "{what} {path}: {user} może go odczytać, uprawnienia {mode}",
        "doctor.files.missing": "{what} {path} nie istnieje",
        "doctor.files.not_file": "{what} {path} nie jest plikiem (folder?): wskaż plik w {config_key}",
        "doctor.files.unreadable": "{user} nie może odczytać: {what} {path} (właściciel {owner}, grupa {group}, "
                                   "uprawnienia {mode})",
        "doctor.files.mode": "{what} {path} mogą czytać inni (uprawnienia {mode}): chmod 600 {path}",
        "doctor.files.invalid": "{what} {path} nie nadaje się do użytku: {message}",
        "doctor.files.gone": "{what} {path} zniknął, gdy posd działa: POS nie odczyta tokenu, który posd "
                             "przyjmuje; uruchom posd ponownie (utworzy nowy) i przekaż POS nowy token",
        "doctor.files.not_yet": "{what} {path} jeszcze nie istnieje: posd utworzy go przy pierwszym starcie",
        "doctor.files.denied": "nie można sprawdzić: {what} {path} jako {runner}: brak uprawnień; uruchom "
                               "posd doctor jako root lub użytkownik posd",
        "doctor.storage.dir_ok": "{path}: {user} może tam zapisywać",
        "doctor.storage.dir_missing": "{path} jeszcze nie istnieje: posd utworzy go przy pierwszym starcie",
        "doctor.storage.dir_unwritable": "{user} nie może zapisywać w {path} (właściciel {owner}, grupa {group}, "
                                         "uprawnienia {mode})",
        "doctor.storage.dir_unmakable": "{path} nie istnieje, a {user} nie może go utworzyć: nie może zapisywać w "
                                        "{above} (właściciel {owner}, grupa {group}, uprawnienia {mode})",
        "doctor.storage.dir_refused": "nie można użyć {path}: jądro nie tworzy niczego w {folder} ({reason}); "
                                      "ustaw storage.dir na folder na dysku (domyślnie /var/lib/posd)",
        "doctor.storage.disk_ok": "wolne {free} z {total} na dysku danych ({mount})",
        "doctor.storage.disk_low": "dysk danych ({mount}) jest prawie pełny: wolne {free} z {total} (minimum "
                                   "{min}); gdy się zapełni, sprzedaże przestaną być zapisywane",
        "doctor.storage.disk_full": "dysk danych ({mount}) jest pełny: wolne {free} z {total}; sprzedaż, zwrot "
                                    "lub wymiana punktów, które już się nie mieszczą, są odrzucane (503 "
                                    "storage_full): zwolnij na nim miejsce, a posd od razu zacznie znów zapisywać",
        "doctor.storage.db_ok": "{file}: {size}, kontrola spójności ok",
        "doctor.storage.db_missing": "{file} jeszcze nie istnieje: posd utworzy go przy pierwszym starcie",
        "doctor.storage.dir_denied": "nie można zajrzeć do {path} jako {runner}: brak uprawnień; uruchom posd "
                                     "doctor jako root lub użytkownik posd",
        "doctor.storage.db_denied": "nie można odczytać {file} jako {runner}: {reason}; uruchom posd doctor "
                                    "jako root lub użytkownik posd (spójność nie została sprawdzona)",
        "doctor.storage.dir_frozen": "{path}: nikt nie może tam zapisywać, także root ({reason}): posd nie "
                                     "wystartuje",
        "doctor.storage.dir_not_folder": "{path} nie jest folderem: storage.dir wskazuje folder, w którym posd "
                                         "trzyma ledger.db i cache.db",
        "doctor.storage.db_folder": "{file} nie został sprawdzony: posd nie może użyć jego folderu (wyżej)",
        "doctor.storage.db_unwritable": "{user} nie może zapisywać do {path}: {reason}; posd nie wystartuje",
        "doctor.why.read_only": "system plików jest zamontowany tylko do odczytu: zamontuj go ponownie do zapisu",
        "doctor.why.immutable": "plik jest niezmienny lub tylko do dopisywania: chattr -i -a",
        "doctor.why.mode": "właściciel {owner}, grupa {group}, uprawnienia {mode} (właścicielem ma być "
                           "użytkownik posd)",
        "doctor.storage.db_unreadable": "nie można odczytać {file} ({reason}): spójność nie została sprawdzona; "
                                        "nic nie wskazuje na uszkodzenie: uruchom posd doctor ponownie",
        "doctor.storage.ledger_corrupt": "ledger.db nie przeszedł kontroli spójności ({problem}): posd nie "
                                         "wystartuje na nim; przywróć ostatnią kopię (docs/install.md)",
        "doctor.storage.ledger_empty": "ledger.db jest pusty (0 bajtów): historia tej kasy przepadła albo jej "
                                       "pierwszy start się nie zakończył; posd nie wystartuje na nim. Przywróć "
                                       "ostatnią kopię (docs/install.md); na kasie, która niczego nie zapisała, "
                                       "usuń plik",
        "doctor.storage.ledger_write_back_cut": "brak ledger.db, jest {spare}: zapis zwrotny rozpoczęty przez posd "
                                                "(ledger.db usunięty w czasie pracy) został przerwany, a kopia nie "
                                                "przechodzi kontroli spójności; posd nie wystartuje. Przywróć ledger.db "
                                                "z ostatniej kopii",
        "doctor.storage.ledger_wal_orphan": "brak ledger.db, ale jest {wal} ({bytes} B): najnowsze zapisy bez "
                                            "swojego rejestru; posd nie wystartuje. Przywróć obok niego ledger.db z "
                                            "ostatniej kopii albo odłóż {wal}, by zacząć nową historię kasy",
        "doctor.storage.ledger_other_lane": "ledger.db zawiera historię sklepu {store} kasy {lane}, a konfiguracja "
                                            "podaje sklep {config_store} kasę {config_lane}; posd nie łączy historii "
                                            "kas. Popraw lane.store_id i lane.lane_id albo daj tej kasie jej własny "
                                            "rejestr",
        "doctor.storage.ledger_newer": "ledger.db zapisała nowsza wersja posd (migracje {migrations}); ta wersja "
                                       "go nie dotknie. Zainstaluj ponownie tamtą wersję",
        "doctor.storage.ledger_not_file": "ledger.db nie jest plikiem (folder utworzony przez pomyłkę?): posd nie "
                                          "wystartuje. Przenieś go (i przywróć ledger.db z ostatniej kopii, jeśli "
                                          "kasa go miała)",
        "doctor.storage.ledger_foreign": "ledger.db nie jest rejestrem posd: ma tabele innej bazy ({tables}); "
                                         "posd na nim nie wystartuje. Przywróć ledger.db tej kasy z ostatniej kopii "
                                         "(docs/install.md, Backup and restore) albo odłóż plik, by zacząć nową "
                                         "historię kasy",
        "doctor.storage.cache_corrupt": "cache.db jest uszkodzony ({problem}): posd odłoży go i odbuduje z "
                                        "centrali przy następnym starcie (systemctl restart posd)",
        "doctor.storage.growth": "ledger.db rośnie o około {rate} dziennie (zdarzenia: {events}, okres: "
                                 "{window})",
        "doctor.storage.growth_full": "ledger.db rośnie o około {rate} dziennie: dysk zapełni się za około "
                                      "{days} dni",
        "doctor.devices.ok": "{name} ({kind}): {path} jest i {user} może go otworzyć (właściciel {owner}, "
                             "grupa {group}, uprawnienia {mode}; {rule})",
        "doctor.devices.missing": "{name} ({kind}): {path} nie istnieje: odłączone albo błędny URL "
                                  "(`posd devices` pokazuje, co jest podłączone)",
        "doctor.devices.denied": "{name} ({kind}): {user} nie może otworzyć {path} (właściciel {owner}, "
                                 "grupa {group}, uprawnienia {mode}; {rule})",
        "doctor.devices.rule": "reguła udev {rule}",
        "doctor.devices.no_rule": "żadna reguła udev go nie wymienia: docs/install.md, urządzenia i grupy",
        "doctor.devices.plain_file": "plik, nie urządzenie: reguła udev nie jest potrzebna",
        "doctor.devices.virtual": "{name} ({kind}): {url} to urządzenie wirtualne tworzone przez działający posd",
        "doctor.devices.pty_denied": "{name} ({kind}): {user} nie może utworzyć dowiązania {path} w {folder} "
                                     "(właściciel {owner}, grupa {group}, uprawnienia {mode}): ten skaner nie "
                                     "ruszy; wskaż ścieżkę w folderze, do którego {user} może pisać",
        "doctor.devices.pty_blocked": "{name} ({kind}): {path} to {what}, a nie dowiązanie, które posd "
                                      "tworzy do urządzenia wirtualnego: posd go nie zastępuje, więc ten skaner "
                                      "nie ruszy; przenieś go lub wskaż inną ścieżkę w konfiguracji",
        "doctor.pty_holder.file": "plik",
        "doctor.pty_holder.folder": "folder",
        "doctor.pty_holder.other": "węzeł urządzenia, potok lub gniazdo",
        "doctor.devices.network": "{name} ({kind}): {url} to urządzenie sieciowe",
        "doctor.devices.printer_ready": "{name}: drukarka odpowiada na pytanie o stan (DLE EOT): gotowa, {paper}",
        "doctor.devices.printer_problem": "{name}: drukarka odpowiada na pytanie o stan (DLE EOT): {reason}",
        "doctor.devices.printer_silent": "{name}: drukarka nie odpowiada na pytanie o stan (DLE EOT); posd "
                                         "widzi tylko błędy transmisji",
        "doctor.devices.printer_fell_silent": "{name}: drukarka odpowiadała na pytanie o stan (DLE EOT), a teraz "
                                              "milczy: wyłączona, zawieszona albo nie słucha za serwerem wydruku; "
                                              "posd wstrzymuje jej paragony, aż odpowie. Drukarka wymieniona na model, "
                                              "który nigdy nie odpowiada: dodaj status=0 do jej URL",
        "doctor.devices.printer_unreachable": "{name}: brak połączenia z drukarką {url}: {reason}",
        "doctor.devices.printer_none": "brak drukarki w konfiguracji: bez paragonów lojalnościowych",
        "doctor.devices.preview": "{name}: paragony są zapisywane jako pliki w {path}",
        "doctor.devices.preview_denied": "{name}: {user} nie może zapisywać paragonów w {path}",
        "doctor.devices.file_is_folder": "{name}: {path} to folder: drukarka file:// pisze do pliku, kolejki FIFO "
                                         "albo urządzenia (preview:// trzyma paragony w folderze)",
        "doctor.devices.preview_not_folder": "{name}: {file} jest plikiem, nie folderem: posd nie może "
                                             "zapisywać paragonów w {path} (preview:// wskazuje folder; przenieś "
                                             "plik lub zmień URL)",
        "doctor.devices.unseen": "{name} ({kind}): nie można sprawdzić {path} jako {runner}: brak uprawnień; "
                                 "uruchom posd doctor jako root lub użytkownik posd",
        "doctor.devices.pcsc_ok": "{name}: pcscd odpowiada; czytnik {reader} jest podłączony",
        "doctor.devices.pcsc_missing": "{name}: pcscd odpowiada, ale żaden czytnik nie pasuje do {reader} "
                                       "(czytniki: {readers})",
        "doctor.devices.pcsc_down": "{name}: pcscd nie odpowiada ({message}): apt-get install pcscd; "
                                    "systemctl enable --now pcscd",
        "doctor.devices.reported": "{name}: działający posd podaje stan {state}{reason}",
        "doctor.central.dns_ok": "{host} wskazuje na {addresses}",
        "doctor.central.dns_failed": "nie można ustalić adresu {host}: {message}",
        "doctor.central.tcp_ok": "{host}:{port} przyjmuje połączenie ({ms} ms)",
        "doctor.central.tcp_failed": "nie można połączyć się z {host}:{port}: {message}",
        "doctor.central.tls_ok": "TLS {version}; certyfikat ważny do {until} (zostało dni: {days})",
        "doctor.central.tls_expiring": "certyfikat TLS centrali wygasa za {days} dni ({until})",
        "doctor.central.tls_failed": "połączenie TLS z {host} nie powiodło się: {message}",
        "doctor.central.tls_plain": "zwykłe http:// bez TLS (dopuszczalne tylko w zaufanej sieci)",
        "doctor.central.tls_unverified": "certyfikat TLS nie jest sprawdzany (verify_tls = false)",
        "doctor.central.signature_ok": "centrala przyjęła podpisane zapytanie kasy (sklep {store}, kasa {lane})",
        "doctor.central.signature_refused": "centrala odrzuciła podpis kasy (HTTP {status} {code}): sprawdź "
                                            "sekret sklepu, identyfikator sklepu i zegar",
        "doctor.central.signature_error": "centrala nie odpowiedziała na podpisane zapytanie: {message}",
        "doctor.central.clock_ok": "zegar kasy {side} o {apart} s względem zegara centrali",
        "doctor.central.clock_skew": "zegar kasy {side} o {apart} s względem zegara centrali (limit {limit} s): "
                                     "włącz synchronizację czasu (timedatectl set-ntp true)",
        "doctor.central.clock_unknown": "centrala nie podała nagłówka Date: różnica zegarów nieznana",
        "doctor.sync.ok": "zdarzeń czekających na centralę: {pending}{oldest}; ostatecznie odrzuconych: "
                          "{quarantined}",
        "doctor.sync.identity_moved": "ta kasa synchronizuje się jako {sync_lane}: centrala miała już inną "
                                      "historię pod {lane}, gdy ten rejestr pierwszy raz do niej dotarł. Po "
                                      "utracie ledger.db tak ma być; jeśli inna kasa też jest ustawiona jako "
                                      "sklep {store} kasa {lane}, daj każdej kasie własne lane.lane_id",
        "doctor.sync.backlog": "zdarzeń czekających na centralę: {pending}, najstarsze od {age}",
        "doctor.sync.quarantined": "centrala ostatecznie odrzuciła zdarzeń: {quarantined} (kwarantanna); "
                                   "przyczyna w GET /v1/health",
        "doctor.cache.ok": "klientów: {members}, odświeżeni {age} temu; program {version}",
        "doctor.cache.stale": "klienci odświeżeni ostatnio {age} temu (nieaktualne po dobie)",
        "doctor.cache.empty": "brak klientów: posd jeszcze nic nie pobrał z centrali",
        "doctor.cache.currency": "program {version} nalicza za {earned}, nie za walutę tej kasy {currency} "
                                 "([lane] currency): sprzedaże w {currency} są odrzucane (unsupported_currency)",
        "doctor.cache.no_program": "brak programu lojalnościowego: sprzedaże są odrzucane, dopóki posd go "
                                   "nie pobierze",
        "doctor.daemon.ok": "posd {version} odpowiada pod {url}: {status}, działa od {uptime}",
        "doctor.daemon.down": "posd nie odpowiada pod {url} ({message}): systemctl status posd; "
                              "journalctl -u posd -p warning",
        "doctor.daemon.other_lane": "posd odpowiadający pod {url} to sklep {store}, stanowisko {lane}, a nie "
                                    "sklep {our_store}, stanowisko {our_lane} z tej konfiguracji: posd innego "
                                    "stanowiska na tym porcie (posd tego stanowiska nie działa lub słucha gdzie "
                                    "indziej) albo [lane] zmieniono od startu posd (systemctl restart posd); "
                                    "każde stanowisko potrzebuje własnego [api] listen",
        "doctor.daemon.version": "działa posd {running}, zainstalowany jest {installed}: systemctl restart posd",
        "doctor.daemon.issue": "posd zgłasza: {text}",
        "doctor.unit.ok": "{unit}: ekspozycja wg systemd-analyze security {score} (najwyżej {limit})",
        "doctor.unit.exposed": "{unit}: ekspozycja wg systemd-analyze security {score}, powyżej {limit}: "
                               "czy nakładka osłabiła zabezpieczenia? (systemctl cat posd)",
        "doctor.unit.unknown": "{unit}: systemd-analyze nie podał wyniku: {message}",
        "doctor.unit.absent": "systemd-analyze nie jest zainstalowany",
        "doctor.unit.no_unit": "posd.service nie jest tu zainstalowany",
    },
    "fa": {
        "status.title": "posd: وضعیت صندوق",
        "status.ok": "همه چیز کار می‌کند",
        "status.degraded": "کار می‌کند، با هشدار",
        "status.error": "نیاز به رسیدگی",
        "status.problems": "مشکلات",
        "status.devices": "دستگاه‌ها",
        "status.sync": "همگام‌سازی با مرکز",
        "status.online": "متصل",
        "status.offline": "قطع",
        "status.auth_failed": "مرکز اعتبارنامه را رد کرد",
        "status.pending": "رویدادهای در صف",
        "status.oldest": "قدیمی‌ترین در صف",
        "status.quarantined": "ردشده توسط مرکز",
        "status.token_replays": "کدهای عضویت استفاده‌شده در صندوق دیگر (علامت‌گذاری‌شده توسط مرکز)",
        "status.birthday_repeats": "هدیه‌های تولدی که پیش‌تر در صندوق دیگر داده شده بود (علامت‌گذاری‌شده توسط مرکز)",
        "status.last_success": "آخرین همگام‌سازی موفق",
        "status.last_error": "آخرین خطا",
        "status.clock_skew": "اختلاف ساعت با مرکز",
        "status.cache": "اعضا و برنامه",
        "status.members": "اعضای ذخیره‌شده",
        "status.program": "نسخهٔ برنامه",
        "status.synced": "به‌روزرسانی اعضا",
        "status.stale": "قدیمی",
        "status.device": "دستگاه",
        "status.kind": "نوع",
        "status.url": "نشانی",
        "status.state": "وضعیت",
        "status.reason": "علت",
        "status.since": "از",
        "status.paper": "کاغذ",
        "status.none": "هیچ",
        "status.never": "هرگز",
        "status.lane": "فروشگاه {store}، صندوق {lane}",
        "status.last_sale": "آخرین فروش",
        "status.storage": "فضای آزاد دیسک",
        "status.version": "posd {version}، در حال کار از {started}",
        "status.updated": "وضعیت در {time}؛ این صفحه خودکار تازه می‌شود",
        "kind.scanner": "اسکنر",
        "kind.printer": "چاپگر",
        "kind.card_reader": "کارت‌خوان",
        "state.closed": "بسته",
        "state.idle": "آماده",
        "state.busy": "مشغول",
        "state.error": "خطا",
        "reason.offline": "در دسترس نیست (جدا، خاموش یا بدون اتصال)",
        "reason.paper_out": "کاغذ تمام شده",
        "reason.paper_near_end": "کاغذ رو به اتمام است",
        "reason.cover_open": "درپوش باز است",
        "reason.printer_error": "خطای چاپگر (راهنمای آن را ببینید)",
        "reason.io_error": "خطای ورودی/خروجی (گزارش را ببینید)",
        "reason.service_unavailable": "سرویس pcscd اجرا نمی‌شود",
        "paper.ok": "کاغذ دارد",
        "paper.near_end": "کاغذ رو به اتمام",
        "paper.out": "کاغذ تمام شده",
        "issue.device_error": "{subject}: {reason}",
        "issue.paper_near_end": "{subject}: کاغذ رو به اتمام است، رول را عوض کنید",
        "issue.program_missing": "هنوز برنامهٔ وفاداری از مرکز نرسیده: فروش ثبت نمی‌شود",
        "issue.currency_not_earned": "برنامهٔ {version} برای {earned} امتیاز می‌دهد، نه برای {currency} این صندوق: "
                                     "فروش به {currency} ثبت نمی‌شود",
        "issue.ledger_unwritable": "ledger.db نوشته نمی‌شود: فروش ثبت نمی‌شود",
        "issue.print_worker_stopped": "صف چاپ متوقف شده: رسیدها چاپ نمی‌شوند",
        "issue.central_unreachable": "مرکز در دسترس نیست؛ فروش‌ها نگه داشته و بعداً فرستاده می‌شوند",
        "issue.central_error": "مرکز با خطا پاسخ می‌دهد؛ فروش‌ها نگه داشته و بعداً فرستاده می‌شوند",
        "issue.central_auth_failed": "مرکز اعتبارنامهٔ صندوق را نپذیرفت: رمز فروشگاه را بررسی کنید",
        "issue.identity_conflict": "مرکز سابقهٔ دیگری از این صندوق دارد؛ همگام‌سازی متوقف شد "
                                   "(نسخهٔ قدیمی ledger.db بازگردانی شده یا صندوق دیگری با همین شناسه کار "
                                   "می‌کند؟): docs/install.md، Restore",
        "issue.program_refused": "برنامهٔ {version} از مرکز پذیرفته نشد و برنامهٔ فعلی به کار می‌رود: {detail}",
        "issue.quarantined": "{count} رویداد برای همیشه توسط مرکز رد شد",
        "issue.sync_backlog": "{count} رویداد در انتظار مرکز، قدیمی‌ترین از {age} پیش",
        "issue.cache_stale": "اطلاعات اعضا بیش از یک روز است که از مرکز به‌روز نشده",
        "issue.cache_never": "اطلاعات اعضا هنوز از مرکز دریافت نشده",
        "issue.disk_low": "فقط {free} فضای آزاد روی دیسک مانده (حداقل {min})",
        "unit.s": "{n} ثانیه",
        "unit.min": "{n} دقیقه",
        "unit.h": "{n} ساعت",
        "unit.d": "{n} روز",
        "doctor.title": "posd doctor: {path}",
        "doctor.col.area": "بخش",
        "doctor.col.status": "نتیجه",
        "doctor.col.finding": "یافته",
        "doctor.result.ok": "درست",
        "doctor.result.warn": "هشدار",
        "doctor.result.fail": "خطا",
        "doctor.result.skip": "بررسی نشد",
        "doctor.summary.ok": "مشکلی پیدا نشد ({warnings} هشدار).",
        "doctor.summary.fail": "{failures} مشکل و {warnings} هشدار پیدا شد.",
        "doctor.area.config": "پیکربندی",
        "doctor.area.files": "فایل‌ها",
        "doctor.area.storage": "ذخیره‌سازی",
        "doctor.area.devices": "دستگاه‌ها",
        "doctor.area.central": "مرکز",
        "doctor.area.sync": "همگام‌سازی",
        "doctor.area.cache": "حافظهٔ اعضا",
        "doctor.area.daemon": "سرویس",
        "doctor.area.unit": "واحد systemd",
        "doctor.what.store_secret_file": "رمز فروشگاه",
        "doctor.what.client_cert": "گواهی کلاینت",
        "doctor.what.client_key": "کلید کلاینت",
        "doctor.what.token_file": "توکن API",
        "doctor.config.ok": "{path} درست است: فروشگاه {store}، صندوق {lane}",
        "doctor.config.error": "{where}: {message}",
        "doctor.config.line": "(خط {line})",
        "doctor.config.unreadable_by": "{user} نمی‌تواند {path} را بخواند (مالک {owner}، گروه {group}، دسترسی "
                                       "{mode}): posd با کاربر {user} اجرا نمی‌شود",
        "doctor.config.secret_readable": "{path} رمز فروشگاه (store_secret) را دارد و دیگران می‌توانند آن را "
                                         "بخوانند (دسترسی {mode}): chmod 640 {path} یا رمز را به store_secret_file "
                                         "منتقل کنید",
        "doctor.config.unreadable": "{path} خوانده نمی‌شود: {message}",
        "doctor.config.denied": "{path} با کاربر {runner} خوانده نمی‌شود: اجازهٔ دسترسی نیست؛ posd doctor را "
                                "با root یا کاربر posd اجرا کنید",
        "doctor.config.file": "{message}",
        "config.unknown_key": "کلید ناشناخته (املای آن را بررسی کنید؛ نمونه: config/posd.example.toml)",
        "config.missing": "کلید لازم وجود ندارد",
        "config.bool_type": "باید true یا false باشد، بدون گیومه (داده‌شده: {got})",
        "config.int_type": "باید عدد صحیح باشد، بدون گیومه (داده‌شده: {got})",
        "config.float_type": "باید عدد باشد، بدون گیومه (داده‌شده: {got})",
        "config.string_type": "باید متنی در گیومه باشد (داده‌شده: {got})",
        "config.tuple_type": "باید فهرستی در کروشه باشد، مانند [\"...\"] (داده‌شده: {got})",
        "config.model_type": "باید جدولی از کلیدها باشد (داده‌شده: {got})",
        "config.model_attributes_type": "باید جدولی از کلیدها باشد (داده‌شده: {got})",
        "config.dict_type": "باید جدولی از کلیدها باشد (داده‌شده: {got})",
        "config.choice": "مقدارهای مجاز: {expected}",
        "config.choice_number": "مقدارهای مجاز: {expected}، عددی بدون گیومه",
        "config.got.str": "متن",
        "config.got.int": "عدد",
        "config.got.float": "عدد",
        "config.got.bool": "true/false",
        "config.got.list": "فهرست",
        "config.got.dict": "جدول",
        "doctor.skipped": "{what}: بررسی نشد ({reason})",
        "doctor.check.tcp": "TCP",
        "doctor.check.tls": "TLS",
        "doctor.check.signature": "درخواست امضاشده",
        "doctor.check.clock": "ساعت",
        "doctor.clock.behind": "عقب‌تر",
        "doctor.clock.ahead": "جلوتر",
        "doctor.skipped.config": "پیکربندی نادرست است",
        "doctor.skipped.config_unread": "پیکربندی خوانده نشد",
        "doctor.skipped.central": "مرکز در دسترس نیست",
        "doctor.files.ok": "{what} {path}: برای {user} خواندنی، دسترسی {mode}",
        "doctor.files.missing": "{what} {path} وجود ندارد",
        "doctor.files.not_file": "{what} {path} فایل نیست (پوشه است؟): فایل را در {config_key} بدهید",
        "doctor.files.unreadable": "{user} نمی‌تواند {what} {path} را بخواند (مالک {owner}، گروه {group}، "
                                   "دسترسی {mode})",
        "doctor.files.mode": "{what} {path} را دیگران هم می‌توانند بخوانند (دسترسی {mode}): chmod 600 {path}",
        "doctor.files.invalid": "{what} {path} قابل استفاده نیست: {message}",
        "doctor.files.gone": "{what} {path} در حالی که posd اجرا می‌شود حذف شده است: POS نمی‌تواند توکنی را "
                             "که posd می‌پذیرد بخواند؛ posd را دوباره راه‌اندازی کنید (توکن تازه می‌سازد) و توکن "
                             "تازه را به POS بدهید",
        "doctor.files.not_yet": "{what} {path} هنوز وجود ندارد: posd در نخستین اجرا آن را می‌سازد",
        "doctor.files.denied": "{what} {path} را نمی‌توان با کاربر {runner} بررسی کرد: اجازهٔ دسترسی نیست؛ "
                               "posd doctor را با root یا کاربر posd اجرا کنید",
        "doctor.storage.dir_ok": "{path}: {user} می‌تواند در آن بنویسد",
        "doctor.storage.dir_missing": "{path} هنوز وجود ندارد: posd در نخستین اجرا آن را می‌سازد",
        "doctor.storage.dir_unwritable": "{user} نمی‌تواند در {path} بنویسد (مالک {owner}، گروه {group}، "
                                         "دسترسی {mode})",
        "doctor.storage.dir_unmakable": "{path} وجود ندارد و {user} نمی‌تواند آن را بسازد: در {above} نمی‌تواند "
                                        "بنویسد (مالک {owner}، گروه {group}، دسترسی {mode})",
        "doctor.storage.dir_refused": "از {path} نمی‌توان استفاده کرد: هسته در {folder} چیزی نمی‌سازد ({reason})؛ "
                                      "storage.dir را پوشه‌ای روی دیسک بگذارید (پیش‌فرض /var/lib/posd)",
        "doctor.storage.disk_ok": "{free} آزاد از {total} روی دیسک داده ({mount})",
        "doctor.storage.disk_low": "دیسک داده ({mount}) تقریباً پر است: {free} آزاد از {total} (حداقل {min})؛ "
                                   "وقتی پر شود فروش‌ها ثبت نمی‌شوند",
        "doctor.storage.disk_full": "دیسک داده ({mount}) پر است: {free} آزاد از {total}؛ فروش، مرجوعی یا "
                                    "خرج امتیازی که دیگر جا نشود رد می‌شود (503 storage_full): روی آن جا باز کنید "
                                    "تا posd بی‌درنگ دوباره ثبت کند",
        "doctor.storage.db_ok": "{file}: {size}، بررسی یکپارچگی درست",
        "doctor.storage.db_missing": "{file} هنوز وجود ندارد: posd در نخستین اجرا آن را می‌سازد",
        "doctor.storage.dir_denied": "نمی‌توان با کاربر {runner} درون {path} را دید: اجازهٔ دسترسی نیست؛ "
                                     "posd doctor را با root یا کاربر posd اجرا کنید",
        "doctor.storage.db_denied": "{file} را نمی‌توان با کاربر {runner} خواند: {reason}؛ posd doctor را با root "
                                    "یا کاربر posd اجرا کنید (یکپارچگی آن بررسی نشد)",
        "doctor.storage.dir_frozen": "{path}: هیچ کاربری، حتی root، نمی‌تواند آنجا بنویسد ({reason}): posd اجرا "
                                     "نمی‌شود",
        "doctor.storage.dir_not_folder": "{path} پوشه نیست: storage.dir پوشه‌ای است که posd فایل‌های ledger.db و "
                                         "cache.db را در آن نگه می‌دارد",
        "doctor.storage.db_folder": "{file} بررسی نشد: posd نمی‌تواند از پوشهٔ آن استفاده کند (بالاتر)",
        "doctor.storage.db_unwritable": "{user} نمی‌تواند در {path} بنویسد: {reason}؛ posd اجرا نمی‌شود",
        "doctor.why.read_only": "سیستم فایل آن فقط‌خواندنی سوار شده است: آن را خواندنی‌ـ‌نوشتنی سوار کنید",
        "doctor.why.immutable": "فایل تغییرناپذیر یا فقط‌افزودنی است: chattr -i -a",
        "doctor.why.mode": "مالک {owner}، گروه {group}، دسترسی {mode} (مالک آن را کاربر posd کنید)",
        "doctor.storage.db_unreadable": "{file} خوانده نشد ({reason}): یکپارچگی آن بررسی نشد؛ نشانه‌ای از آسیب "
                                        "نیست: posd doctor را دوباره اجرا کنید",
        "doctor.storage.ledger_corrupt": "ledger.db در بررسی یکپارچگی رد شد ({problem}): posd با آن اجرا "
                                         "نمی‌شود؛ آخرین نسخهٔ پشتیبان را بازگردانید (docs/install.md)",
        "doctor.storage.ledger_empty": "ledger.db خالی است (۰ بایت): تاریخچهٔ این صندوق از دست رفته یا نخستین اجرای "
                                       "آن تمام نشده است؛ posd با آن اجرا نمی‌شود. آخرین نسخهٔ پشتیبان را بازگردانید "
                                       "(docs/install.md)؛ در صندوقی که هیچ چیز ثبت نکرده، فایل را پاک کنید",
        "doctor.storage.ledger_write_back_cut": "ledger.db نیست و {spare} هست: بازنویسی‌ای که posd آغاز کرده بود "
                                                "(ledger.db هنگام اجرا پاک شد) نیمه‌کاره ماند و نسخه از بررسی سلامت "
                                                "نمی‌گذرد؛ posd اجرا نمی‌شود. ledger.db را از آخرین نسخهٔ پشتیبان بازگردانید",
        "doctor.storage.ledger_wal_orphan": "ledger.db نیست اما {wal} ({bytes} بایت) هست: تازه‌ترین ثبت‌ها بدون "
                                            "دفتر خودشان؛ posd اجرا نمی‌شود. ledger.db را از آخرین نسخهٔ پشتیبان کنار "
                                            "آن بازگردانید، یا {wal} را کنار بگذارید تا تاریخچهٔ تازه‌ای آغاز شود",
        "doctor.storage.ledger_other_lane": "ledger.db تاریخچهٔ فروشگاه {store} صندوق {lane} را دارد، اما پیکربندی "
                                            "فروشگاه {config_store} صندوق {config_lane} را می‌گوید؛ posd تاریخچهٔ "
                                            "صندوق‌ها را با هم نمی‌آمیزد. lane.store_id و lane.lane_id را درست کنید "
                                            "یا به این صندوق دفتر خودش را بدهید",
        "doctor.storage.ledger_newer": "ledger.db را نسخهٔ تازه‌تری از posd نوشته است (مهاجرت‌های {migrations})؛ "
                                       "این نسخه به آن دست نمی‌زند. همان نسخه را دوباره نصب کنید",
        "doctor.storage.ledger_not_file": "ledger.db پرونده نیست (پوشه‌ای که به اشتباه ساخته شده؟): posd اجرا "
                                          "نمی‌شود. آن را جابه‌جا کنید (و اگر صندوق دفتری داشت، ledger.db را از "
                                          "آخرین پشتیبان برگردانید)",
        "doctor.storage.ledger_foreign": "ledger.db دفتر posd نیست: جدول‌های پایگاه دادهٔ دیگری را دارد ({tables})؛ "
                                         "posd با آن اجرا نمی‌شود. ledger.db این صندوق را از آخرین پشتیبان برگردانید "
                                         "(docs/install.md، Backup and restore) یا پرونده را کنار بگذارید تا تاریخچهٔ "
                                         "تازه‌ای برای صندوق آغاز شود",
        "doctor.storage.cache_corrupt": "cache.db آسیب دیده است ({problem}): posd در اجرای بعدی آن را کنار "
                                        "می‌گذارد و از مرکز بازسازی می‌کند (systemctl restart posd)",
        "doctor.storage.growth": "ledger.db روزانه حدود {rate} بزرگ می‌شود ({events} رویداد در {window} گذشته)",
        "doctor.storage.growth_full": "ledger.db روزانه حدود {rate} بزرگ می‌شود: دیسک حدود {days} روز دیگر "
                                      "پر می‌شود",
        "doctor.devices.ok": "{name} ({kind}): {path} وجود دارد و {user} می‌تواند آن را باز کند (مالک {owner}، "
                             "گروه {group}، دسترسی {mode}؛ {rule})",
        "doctor.devices.missing": "{name} ({kind}): {path} وجود ندارد: جدا شده یا نشانی نادرست است "
                                  "(`posd devices` دستگاه‌های وصل را نشان می‌دهد)",
        "doctor.devices.denied": "{name} ({kind}): {user} نمی‌تواند {path} را باز کند (مالک {owner}، "
                                 "گروه {group}، دسترسی {mode}؛ {rule})",
        "doctor.devices.rule": "قاعدهٔ udev {rule}",
        "doctor.devices.no_rule": "هیچ قاعدهٔ udev به آن اشاره نمی‌کند: docs/install.md، دستگاه‌ها و گروه‌ها",
        "doctor.devices.plain_file": "یک فایل، نه دستگاه: قاعدهٔ udev لازم نیست",
        "doctor.devices.virtual": "{name} ({kind}): {url} دستگاهی مجازی است که posd هنگام اجرا می‌سازد",
        "doctor.devices.pty_denied": "{name} ({kind}): {user} نمی‌تواند پیوند {path} را در {folder} بسازد "
                                     "(مالک {owner}، گروه {group}، دسترسی {mode}): این اسکنر راه نمی‌افتد؛ "
                                     "مسیری در پوشه‌ای بدهید که {user} بتواند در آن بنویسد",
        "doctor.devices.pty_blocked": "{name} ({kind}): {path} {what} است، نه پیوندی که posd به دستگاه "
                                      "مجازی‌اش می‌سازد: posd آن را جایگزین نمی‌کند، پس این اسکنر راه نمی‌افتد؛ "
                                      "آن را جابه‌جا کنید یا مسیر دیگری در پیکربندی بدهید",
        "doctor.pty_holder.file": "یک فایل",
        "doctor.pty_holder.folder": "یک پوشه",
        "doctor.pty_holder.other": "یک گرهٔ دستگاه، لوله یا سوکت",
        "doctor.devices.network": "{name} ({kind}): {url} دستگاه شبکه‌ای است",
        "doctor.devices.printer_ready": "{name}: چاپگر به پرسش وضعیت (DLE EOT) پاسخ می‌دهد: آماده، {paper}",
        "doctor.devices.printer_problem": "{name}: چاپگر به پرسش وضعیت (DLE EOT) پاسخ می‌دهد: {reason}",
        "doctor.devices.printer_silent": "{name}: چاپگر به پرسش وضعیت (DLE EOT) پاسخ نمی‌دهد؛ posd فقط خطاهای "
                                         "ارتباطی را می‌بیند",
        "doctor.devices.printer_fell_silent": "{name}: چاپگر پیش‌تر به پرسش وضعیت (DLE EOT) پاسخ می‌داد و اکنون "
                                              "ساکت است: خاموش شده، گیر کرده یا پشت سرور چاپ گوش نمی‌دهد؛ posd "
                                              "رسیدهایش را تا پاسخ دادنش نگه می‌دارد. اگر چاپگر با مدلی جایگزین شده که "
                                              "هرگز پاسخ نمی‌دهد، status=0 را به URL آن بیفزایید",
        "doctor.devices.printer_unreachable": "{name}: اتصال به چاپگر {url} ممکن نیست: {reason}",
        "doctor.devices.printer_none": "چاپگری تنظیم نشده: رسیدی چاپ نمی‌شود",
        "doctor.devices.preview": "{name}: رسیدها به صورت فایل در {path} نگه داشته می‌شوند",
        "doctor.devices.preview_denied": "{name}: {user} نمی‌تواند رسیدها را در {path} بنویسد",
        "doctor.devices.file_is_folder": "{name}: {path} یک پوشه است: چاپگر file:// در یک فایل، FIFO یا دستگاه "
                                         "می‌نویسد (preview:// رسیدها را در پوشه نگه می‌دارد)",
        "doctor.devices.preview_not_folder": "{name}: {file} یک فایل است، نه پوشه: posd نمی‌تواند رسیدها را در "
                                             "{path} نگه دارد (preview:// یک پوشه را نام می‌برد؛ فایل را جابه‌جا "
                                             "کنید یا URL را تغییر دهید)",
        "doctor.devices.unseen": "{name} ({kind}): نمی‌توان {path} را با کاربر {runner} بررسی کرد: اجازهٔ دسترسی "
                                 "نیست؛ posd doctor را با root یا کاربر posd اجرا کنید",
        "doctor.devices.pcsc_ok": "{name}: pcscd پاسخ می‌دهد؛ کارت‌خوان {reader} وصل است",
        "doctor.devices.pcsc_missing": "{name}: pcscd پاسخ می‌دهد ولی کارت‌خوانی با {reader} جور نیست "
                                       "(کارت‌خوان‌ها: {readers})",
        "doctor.devices.pcsc_down": "{name}: pcscd پاسخ نمی‌دهد ({message}): apt-get install pcscd؛ "
                                    "systemctl enable --now pcscd",
        "doctor.devices.reported": "{name}: posd در حال اجرا وضعیت آن را {state}{reason} گزارش می‌کند",
        "doctor.central.dns_ok": "{host} به {addresses} اشاره می‌کند",
        "doctor.central.dns_failed": "نشانی {host} پیدا نمی‌شود: {message}",
        "doctor.central.tcp_ok": "{host}:{port} اتصال را می‌پذیرد ({ms} میلی‌ثانیه)",
        "doctor.central.tcp_failed": "اتصال به {host}:{port} ممکن نیست: {message}",
        "doctor.central.tls_ok": "TLS {version}؛ گواهی تا {until} معتبر است ({days} روز مانده)",
        "doctor.central.tls_expiring": "گواهی TLS مرکز {days} روز دیگر منقضی می‌شود ({until})",
        "doctor.central.tls_failed": "اتصال TLS با {host} ناموفق بود: {message}",
        "doctor.central.tls_plain": "http:// ساده بدون TLS (فقط در شبکهٔ مطمئن پذیرفتنی است)",
        "doctor.central.tls_unverified": "گواهی TLS بررسی نمی‌شود (verify_tls = false)",
        "doctor.central.signature_ok": "مرکز درخواست امضاشدهٔ صندوق را پذیرفت (فروشگاه {store}، صندوق {lane})",
        "doctor.central.signature_refused": "مرکز امضای صندوق را رد کرد (HTTP {status} {code}): رمز فروشگاه، "
                                            "شناسهٔ فروشگاه و ساعت را بررسی کنید",
        "doctor.central.signature_error": "مرکز به درخواست امضاشده پاسخ نداد: {message}",
        "doctor.central.clock_ok": "ساعت صندوق {apart} ثانیه از ساعت مرکز {side} است",
        "doctor.central.clock_skew": "ساعت صندوق {apart} ثانیه از ساعت مرکز {side} است (حد {limit} ثانیه): "
                                     "همگام‌سازی زمان را روشن کنید (timedatectl set-ntp true)",
        "doctor.central.clock_unknown": "مرکز سرآیند Date نفرستاد: اختلاف ساعت معلوم نیست",
        "doctor.sync.ok": "{pending} رویداد در انتظار مرکز{oldest}؛ {quarantined} رویداد برای همیشه رد شده",
        "doctor.sync.identity_moved": "این صندوق با شناسهٔ {sync_lane} همگام می‌شود: وقتی این دفتر نخستین بار به "
                                      "مرکز رسید، مرکز سابقهٔ دیگری زیر {lane} داشت. پس از گم شدن ledger.db این "
                                      "عادی است؛ اگر صندوق دیگری هم با فروشگاه {store} صندوق {lane} تنظیم شده، "
                                      "به هر صندوق lane.lane_id خودش را بدهید",
        "doctor.sync.backlog": "{pending} رویداد در انتظار مرکز، قدیمی‌ترین از {age} پیش",
        "doctor.sync.quarantined": "{quarantined} رویداد برای همیشه توسط مرکز رد شده (قرنطینه): علت در "
                                   "GET /v1/health",
        "doctor.cache.ok": "{members} عضو، به‌روزشده {age} پیش؛ برنامهٔ {version}",
        "doctor.cache.stale": "اعضا آخرین بار {age} پیش به‌روز شده‌اند (پس از یک روز قدیمی است)",
        "doctor.cache.empty": "هنوز عضوی نیست: posd چیزی از مرکز نگرفته است",
        "doctor.cache.no_program": "هنوز برنامهٔ وفاداری نیست: تا posd آن را نگیرد فروش‌ها رد می‌شوند",
        "doctor.cache.currency": "برنامهٔ {version} برای {earned} امتیاز می‌دهد، نه برای ارز این صندوق {currency} "
                                 "([lane] currency): فروش به {currency} رد می‌شود (unsupported_currency)",
        "doctor.daemon.ok": "posd {version} در {url} پاسخ می‌دهد: {status}، در حال کار از {uptime}",
        "doctor.daemon.down": "posd در {url} پاسخ نمی‌دهد ({message}): systemctl status posd؛ "
                              "journalctl -u posd -p warning",
        "doctor.daemon.other_lane": "posdی که در {url} پاسخ می‌دهد فروشگاه {store} صندوق {lane} است، نه فروشگاه "
                                    "{our_store} صندوق {our_lane} این پیکربندی: posd صندوق دیگری روی این درگاه "
                                    "(posd این صندوق اجرا نمی‌شود یا جای دیگری گوش می‌دهد)، یا [lane] پس از آغاز posd "
                                    "تغییر کرده است (systemctl restart posd)؛ هر صندوق [api] listen "
                                    "خودش را لازم دارد",
        "doctor.daemon.version": "posd در حال اجرا {running} است و نسخهٔ نصب‌شده {installed}: "
                                 "systemctl restart posd",
        "doctor.daemon.issue": "posd گزارش می‌دهد: {text}",
        "doctor.unit.ok": "{unit}: میزان آسیب‌پذیری در systemd-analyze security {score} (حداکثر {limit})",
        "doctor.unit.exposed": "{unit}: میزان آسیب‌پذیری در systemd-analyze security {score}، بیش از {limit}: "
                               "آیا یک drop-in سخت‌سازی را ضعیف کرده؟ (systemctl cat posd)",
        "doctor.unit.unknown": "{unit}: systemd-analyze نمره‌ای نداد: {message}",
        "doctor.unit.absent": "systemd-analyze نصب نیست",
        "doctor.unit.no_unit": "posd.service اینجا نصب نیست",
    },
}
