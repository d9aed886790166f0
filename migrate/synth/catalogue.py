"""Static material ``synth`` draws from: names, regions, dealers and a Kcell-like tariff list."""

from __future__ import annotations

from dataclasses import dataclass

# Kazakh and Russian names; together they use every Kazakh letter Ә Ғ Қ Ң Ө Ұ Ү Һ І, so an
# engine or driver that mangles any of them is caught by the round-trip tests.
MALE_FIRST = (
    "Қуаныш", "Ғалым", "Нұрлан", "Әділет", "Өмірзақ", "Ұлан", "Үмбет", "Ілияс", "Мағжан",
    "Жаһангер", "Ерлан", "Асқар", "Дәурен", "Бауыржан", "Серік", "Айдос", "Алексей", "Дмитрий",
    "Сергей", "Андрей", "Игорь", "Владимир", "Максим", "Тимур", "Руслан", "Арман",
)  # fmt: skip
FEMALE_FIRST = (
    "Әсел", "Ғалия", "Құралай", "Аңсаған", "Өркен", "Ұлжан", "Үміт", "Іңкәр", "Һәдия", "Айгүл",
    "Гүлназ", "Жансая", "Мөлдір", "Баян", "Дана", "Елена", "Ольга", "Татьяна", "Наталья",
    "Ирина", "Анна", "Мария", "Светлана", "Айжан",
)  # fmt: skip
SURNAME_STEMS = (
    "Қасым", "Нұрғали", "Серікбай", "Әбдірахман", "Өтеп", "Ұзақ", "Жүсіп", "Ахмет", "Есекей",
    "Бекмұхамбет", "Тоқай", "Сәрсенбай", "Шәріп", "Оспан", "Исмаил", "Мұхтар", "Ерғали",
    "Иван", "Петр", "Смирн", "Кузнецо", "Попо", "Лебеде", "Козло", "Новико", "Морозо",
)  # fmt: skip
PATRONYMIC_STEMS = (
    "Қуаныш", "Серік", "Нұрлан", "Ерлан", "Асқар", "Бауыржан", "Ғалым", "Әділ", "Сергеев",
    "Иванов", "Петров", "Андреев", "Владимиров", "Николаев",
)  # fmt: skip
COMPANY_NAMES = (
    "ТОО «Қазақ Логистика»", "ТОО «Алматы Құрылыс»", "АО «Шығыс Энерго»",
    "ТОО «Өркен Трейд»", "ТОО «Ұлы Дала Агро»", "ИП «Жүсіпов Ғ.»", "ТОО «Астана Сервис»",
    "АО «Каспий Нефть Сервис»", "ТОО «Үшқоңыр Тур»", "ТОО «Іргетас»",
)  # fmt: skip
REGIONS = (
    "Алматы", "Астана", "Шымкент", "Қарағанды", "Ақтөбе", "Атырау", "Өскемен", "Павлодар",
    "Қостанай", "Қызылорда", "Тараз", "Орал",
)  # fmt: skip
REGION_WEIGHTS = (0.24, 0.14, 0.1, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.05, 0.05, 0.05)

KCELL_PREFIXES = ("701", "702", "775", "778")
ACTIV_PREFIXES = ("700", "705", "707", "747", "771", "776")
DEALERS = tuple(f"D{n:04d}" for n in range(1, 41))
ROAMING_PARTNERS = ("TUR-TCELL", "RUS-MTS", "ARE-ETISALAT", "CHN-CMCC", "DEU-TMOBILE")


@dataclass(frozen=True)
class Tariff:
    """One legacy tariff of the synthetic catalogue."""

    code: str
    name: str
    monthly_fee: int
    """Whole tenge."""
    data_mb: int | None
    kind: str
    has_video: bool
    status: str
    brand: str
    """kcell, activ or any: which brand's subscribers draw it."""
    weight: float
    """Relative popularity among that brand's new subscriptions."""


# Codes are upper-case letters and digits only, so every engine's collation orders them alike.
TARIFFS: tuple[Tariff, ...] = (
    Tariff("ALGA", "Алга", 1990, 3072, "bundle", False, "active", "kcell", 0.22),
    Tariff("PRESTIGE", "Престиж", 4990, 10240, "bundle", False, "active", "kcell", 0.12),
    Tariff("PRESTIGEPLUS", "Престиж+", 7990, 20480, "bundle", False, "active", "kcell", 0.06),
    Tariff("MOBKRUG", "Мобильный Круг", 990, 300, "bundle", False, "active", "kcell", 0.12),
    Tariff("KCELLSOILE", "Kcell Сөйле", 0, None, "payg", False, "active", "kcell", 0.06),
    Tariff("BIZLIGHT", "Бизнес Лайт", 5990, 8192, "bundle", False, "active", "corp", 0.5),
    Tariff("BIZPRO", "Бизнес Про", 9990, 9728, "bundle", False, "active", "corp", 0.3),
    Tariff("CORP30", "Корпоративный 30", 12990, 30720, "bundle", False, "active", "corp", 0.2),
    Tariff("ACTIVSUPER", "Activ Супер", 1490, 1024, "bundle", False, "active", "activ", 0.25),
    Tariff("OILA", "Ойла", 2490, 5120, "bundle", False, "active", "activ", 0.2),
    Tariff("BEZLIM", "Activ Безлимит", 3990, 15360, "bundle", False, "active", "activ", 0.1),
    Tariff("DOSTAR", "Достар", 590, None, "payg", False, "active", "activ", 0.15),
    Tariff("NET5", "Интернет 5 ГБ", 1500, 5120, "data_only", False, "active", "any", 0.03),
    Tariff("NET20", "Интернет 20 ГБ", 3000, 20480, "data_only", False, "active", "any", 0.02),
    Tariff("ROAMNET1", "Роуминг-пакет 1 ГБ", 5000, 1024, "data_only", False, "active", "any", 0.01),
    Tariff("HOME50", "Домашний интернет 50", 4500, None, "home_internet", False, "active", "any",
           0.01),
    Tariff("HOMETV", "Домашний интернет + ТВ", 6900, None, "home_internet", True, "active", "any",
           0.01),
    Tariff("KLASSIKA12", "Классика 2012", 1200, 500, "bundle", False, "retired", "kcell", 0.03),
    Tariff("PROMO2015", "Акция «Жаз» 2015", 1500, 2048, "bundle", False, "retired", "none", 0.0),
)  # fmt: skip

UNMAPPED_TARIFF = "PROMO2015"
"""A hand-coded promo missing from mappings/tariffs.csv: its active subscriptions are planted."""
