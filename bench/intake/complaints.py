"""Realistic ``complaint.submit/1`` bodies built from real complaints.

The rows are 1,000 real complaints of the US CFPB database (``../shared/data/
cfpb-sample-2013.csv``, public domain): their real mix of products, issues and channels,
and their real bursts by day, mapped to this platform's codes. Names, phone numbers and
branches are synthetic (the data has no personal data), derived from the complaint id, so
the same row always gives the same body.

Mapping (CONTRACTS.md §1, services/common/data/categories.yaml):

- product: Mortgage -> mortgage; Credit card -> credit_card; Bank account or service:
  checking -> debit_card, savings and certificates of deposit -> deposit, other -> other;
  Student loan and Consumer Loan -> personal_loan; Money transfers: international ->
  foreign_exchange, domestic -> payment_settlement; Debt collection -> the product the
  debt comes from (credit card, mortgage, auto or student loan -> personal_loan, else
  other); Credit reporting -> personal_loan (in China a credit-report dispute, 征信异议, is
  raised against the lender that reported it).
- channel (``submitted_via``): Web -> web, Phone -> phone, Postal mail and Fax -> letter,
  Email -> email, Referral (forwarded by another agency) -> regulator, with a
  ``regulator_ref``.
- received_at: the row's date, shifted so that the newest row is yesterday, at a business
  hour derived from its id (the data has no times), Asia/Shanghai.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "cfpb-sample-2013.csv"
SHANGHAI = timezone(timedelta(hours=8))
INSTITUTION = "BANKA"
# Outlets and branches of the sample organization (services/routing/data/organization.yaml).
BRANCHES = (
    "BANKA-SD-YT-ZF", "BANKA-SD-YT-LS", "BANKA-SD-WF-KW", "BANKA-SD-ZB-ZD", "BANKA-ZJ-SX-YC",
    "BANKA-ZJ-WZ-LC", "BANKA-SC-MY-FC", "BANKA-SC-DY-JY", "BANKA-SD", "BANKA-ZJ", "BANKA-SC",
)
CHANNELS = {"Web": "web", "Phone": "phone", "Postal mail": "letter", "Fax": "letter", "Email": "email",
            "Referral": "regulator"}
BANK_ACCOUNTS = {"Checking account": "debit_card", "Savings account": "deposit",
                 "(CD) Certificate of deposit": "deposit"}
DEBTS = {"Credit card": "credit_card", "Mortgage": "mortgage", "Auto": "personal_loan",
         "Non-federal student loan": "personal_loan", "Federal student loan": "personal_loan",
         "Payday loan": "personal_loan"}
ISSUES = {
    "Loan modification,collection,foreclosure": "按揭贷款还款困难，申请调整还款计划被拒并面临处置抵押房产",
    "Loan servicing, payments, escrow account": "按揭还款扣款及代扣账户处理有误",
    "Incorrect information on credit report": "个人征信报告信息有误，申请异议处理",
    "Cont'd attempts collect debt not owed": "被持续催收并非本人所欠的债务",
    "Communication tactics": "催收人员频繁来电，态度恶劣",
    "Account opening, closing, or management": "账户开立、销户或管理问题",
    "Deposits and withdrawals": "存取款业务办理有误",
    "Application, originator, mortgage broker": "贷款申请过程中经办人员误导",
    "Repaying your loan": "贷款还款问题",
    "Credit reporting company's investigation": "征信异议处理结果不满意",
    "Disclosure verification of debt": "催收未说明债务来源及金额",
    "Billing disputes": "账单金额有争议",
    "False statements or representation": "销售人员虚假宣传",
    "Improper contact or sharing of info": "催收人员向亲友透露欠款信息",
    "Settlement process and costs": "贷款结清手续及费用问题",
    "Late fee": "对收取的逾期费用有异议",
    "APR or interest rate": "实际利率与宣传不符",
    "Identity theft / Fraud / Embezzlement": "账户被盗用，资金被冒领",
    "Closing/Cancelling account": "销户办理受阻",
    "Problems when you are unable to pay": "无力还款时协商未果",
    "Making/receiving payments, sending money": "汇款未按时到账",
    "Credit decision / Underwriting": "贷款审批结果及理由不透明",
    "Taking/threatening an illegal action": "催收人员威胁采取违法手段",
}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ("伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "丽",
         "建华", "志强")
DEMANDS = ("要求更正并书面答复", "要求退还相关费用", "要求停止不当催收", "要求说明处理依据", "要求赔偿损失")


def product_of(row: dict) -> str:
    product, sub = row["product"], row["sub_product"]
    if product == "Mortgage":
        return "mortgage"
    if product == "Credit card":
        return "credit_card"
    if product == "Bank account or service":
        return BANK_ACCOUNTS.get(sub, "other")
    if product in ("Student loan", "Consumer Loan", "Credit reporting"):
        return "personal_loan"
    if product == "Money transfers":
        return "foreign_exchange" if sub.startswith("International") else "payment_settlement"
    if product == "Debt collection":
        return DEBTS.get(sub, "other")
    return "other"


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def read_rows(path: Path = DATA) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _date(text: str) -> date:
    month, day, year = (int(part) for part in text.split("/"))
    return date(year, month, day)


def submissions(count: int, rows: list[dict] | None = None, today: date | None = None) -> list[tuple[str, dict]]:
    """``count`` (channel, body) pairs, cycling through the rows in their order."""
    rows = rows if rows is not None else read_rows()
    newest = max(_date(row["date_received"]) for row in rows)
    shift = (today or date.today()) - timedelta(days=1) - newest
    result = []
    for index, row in enumerate(itertools.islice(itertools.cycle(rows), count)):
        seed = _digest(f"{row['complaint_id']}/{index // len(rows)}")
        day = _date(row["date_received"]) + shift
        received = datetime(day.year, day.month, day.day, 9 + seed % 8, seed // 8 % 60, seed // 480 % 60,
                            tzinfo=SHANGHAI)
        channel = CHANNELS.get(row["submitted_via"], "web")
        issue = ISSUES.get(row["issue"], row["issue"])
        detail = f"（{row['sub_issue']}）" if row["sub_issue"] else ""
        name = SURNAMES[seed % len(SURNAMES)] + GIVEN[seed // 20 % len(GIVEN)]
        customer = {"name": name, "phone": f"13{seed % 10}{seed // 10 % 10 ** 8:08d}"}
        if seed % 3 == 0:
            customer["email"] = f"customer{row['complaint_id']}@example.cn"
        body = {
            "schema": "complaint.submit/1",
            "external_id": f"CFPB-{row['complaint_id']}-{index // len(rows)}",
            "received_at": received.isoformat(),
            "institution": INSTITUTION,
            "branch": BRANCHES[_digest(row["zipcode"] or row["state"]) % len(BRANCHES)],
            "kind": "consultation" if row["issue"] == "Other" else "complaint",
            "customer": customer,
            "product": product_of(row),
            "subject": issue[:200],
            "description": (f"客户来电/来函反映：{issue}{detail}。客户称已多次与网点沟通未果，"
                            f"原始业务：{row['product']} / {row['sub_product'] or '—'}。"),
            "demand": DEMANDS[seed % len(DEMANDS)],
        }
        if seed % 4 == 0:
            body["amount_in_dispute"] = f"{(seed % 500000) / 100:.2f}"
        if channel == "regulator":
            body["regulator_ref"] = f"JR-{day:%Y%m%d}-{row['complaint_id']}"
        result.append((channel, body))
    return result
