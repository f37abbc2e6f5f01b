"""A small PTB-XL v1.0.3 in the official layout: real statement table, official database columns, WFDB records.

scp_statements.csv below is the official v1.0.3 file verbatim (all 71 statements), taken from the copy vendored in
github.com/Marko2707/Optimization-of-ECG-Classification-Bachelor_Thesis, path scp_statements.csv (first column
unnamed, as published). The database columns are the official ones in the official order (checked against the copy
of ptbxl_database.csv in github.com/arianasatryan/ECG_exp, which appends two columns of its own). Most scp_codes
patterns and reports below are copied from rows of that copy (ecg_id in the comment); the rest are composed in the
same style. Signals come from the synthetic generator at 500 Hz; the 100 Hz version is resampled from it, as
PTB-XL's records100 are downsampled records500.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from orchestrator.datasets.synthetic import generate_record

SCP_STATEMENTS_V103 = """\
,description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass,Statement Category,SCP-ECG Statement Description,AHA code,aECG REFID,CDISC Code,DICOM Code
NDT,non-diagnostic T abnormalities,1.0,1.0,,STTC,STTC,other ST-T descriptive statements,non-diagnostic T abnormalities,,,,
NST_,non-specific ST changes,1.0,1.0,,STTC,NST_,Basic roots for coding ST-T changes and abnormalities,non-specific ST changes,145,MDC_ECG_RHY_STHILOST,,
DIG,digitalis-effect,1.0,1.0,,STTC,STTC,other ST-T descriptive statements,suggests digitalis-effect,205,,,
LNGQT,long QT-interval,1.0,1.0,,STTC,STTC,other ST-T descriptive statements,long QT-interval,148,,,
NORM,normal ECG,1.0,,,NORM,NORM,Normal/abnormal,normal ECG,1,,,F-000B7
IMI,inferior myocardial infarction,1.0,,,MI,IMI,Myocardial Infarction,inferior myocardial infarction,161,,,
ASMI,anteroseptal myocardial infarction,1.0,,,MI,AMI,Myocardial Infarction,anteroseptal myocardial infarction,165,,,
LVH,left ventricular hypertrophy,1.0,,,HYP,LVH,Ventricular Hypertrophy,left ventricular hypertrophy,142,,C71076,
LAFB,left anterior fascicular block,1.0,,,CD,LAFB/LPFB,Intraventricular and intra-atrial Conduction disturbances,left anterior fascicular block,101,MDC_ECG_BEAT_BLK_ANT_L_HEMI,C62267,D3-33140
ISC_,non-specific ischemic,1.0,,,STTC,ISC_,Basic roots for coding ST-T changes and abnormalities,ischemic ST-T changes,226,,,
IRBBB,incomplete right bundle branch block,1.0,,,CD,IRBBB,Intraventricular and intra-atrial Conduction disturbances,incomplete right bundle branch block,105,MDC_ECG_BEAT_RBB_BLK_INCOMP,C71048,D3-33112
1AVB,first degree AV block,1.0,,,CD,_AVB,"Sinus node dysfunction, atrial and AV-conduction defects",first degree AV block,,MDC_ECG_RHY_AV_HEART_BLK_DEG_1,C111088,
IVCD,non-specific intraventricular conduction disturbance (block),1.0,,,CD,IVCD,Intraventricular and intra-atrial Conduction disturbances,non-specific intraventricular conduction disturbance,107,MDC_ECG_BEAT_BLK_IVCD,C62271,D3-33000
ISCAL,ischemic in anterolateral leads,1.0,,,STTC,ISCA,ischemic ST-T changes,in anterolateral leads,,,,
CRBBB,complete right bundle branch block,1.0,,,CD,CRBBB,Intraventricular and intra-atrial Conduction disturbances,(complete) right bundle branch block,106,MDC_ECG_BEAT_RBB_BLK_COMP,C62270,D3-33110
CLBBB,complete left bundle branch block,1.0,,,CD,CLBBB,Intraventricular and intra-atrial Conduction disturbances,(complete) left bundle branch block,104,MDC_ECG_BEAT_LBB_BLK_COMP,C62269,D3-33120 or 122752
ILMI,inferolateral myocardial infarction,1.0,,,MI,IMI,Myocardial Infarction,inferolateral myocardial infarction,,,,
LAO/LAE,left atrial overload/enlargement,1.0,,,HYP,LAO/LAE,Atrial statements,left atrial overload/enlargement,140,,,
AMI,anterior myocardial infarction,1.0,,,MI,AMI,Myocardial Infarction,anterior myocardial infarction,160,,,
ALMI,anterolateral myocardial infarction,1.0,,,MI,AMI,Myocardial Infarction,anterolateral myocardial infarction,,,,
ISCIN,ischemic in inferior leads,1.0,,,STTC,ISCI,ischemic ST-T changes,in inferior leads,,,,
INJAS,subendocardial injury in anteroseptal leads,1.0,,,MI,AMI,ischemic ST-T changes compatible with subendocardial injury,in anteroseptal leads,,,,
LMI,lateral myocardial infarction,1.0,,,MI,LMI,Myocardial Infarction,lateral myocardial infarction,163,,,
ISCIL,ischemic in inferolateral leads,1.0,,,STTC,ISCI,ischemic ST-T changes,in inferolateral leads,,,,
LPFB,left posterior fascicular block,1.0,,,CD,LAFB/LPFB,Intraventricular and intra-atrial Conduction disturbances,left posterior fascicular block,102,MDC_ECG_BEAT_BLK_POS_L_HEMI,C62268,D3-33150
ISCAS,ischemic in anteroseptal leads,1.0,,,STTC,ISCA,ischemic ST-T changes,in anteroseptal leads,,,,
INJAL,subendocardial injury in anterolateral leads,1.0,,,MI,AMI,ischemic ST-T changes compatible with subendocardial injury,in anterolateral leads,,,,
ISCLA,ischemic in lateral leads,1.0,,,STTC,ISCA,ischemic ST-T changes,in lateral leads,,,,
RVH,right ventricular hypertrophy,1.0,,,HYP,RVH,Ventricular Hypertrophy,right ventricular hypertrophy,143,,C71077,
ANEUR,ST-T changes compatible with ventricular aneurysm,1.0,,,STTC,STTC,other ST-T descriptive statements,ST-T changes compatible with ventricular aneurysm,227,,,
RAO/RAE,right atrial overload/enlargement,1.0,,,HYP,RAO/RAE,Atrial statements,right atrial overload/enlargement,141,,,
EL,electrolytic disturbance or drug (former EDIS),1.0,,,STTC,STTC,physiopathological nature of ST-T changes,compatible with electrolyte abnormalities,,,,
WPW,Wolf-Parkinson-White syndrome,1.0,,,CD,WPW,Intraventricular and intra-atrial Conduction disturbances,Wolff-Parkinson-White syndrome,,MDC_ECG_RHY_WPW_UNK,C35132,
ILBBB,incomplete left bundle branch block,1.0,,,CD,ILBBB,Intraventricular and intra-atrial Conduction disturbances,incomplete left bundle branch block,,MDC_ECG_BEAT_LBB_BLK_INCOMP,C71047,
IPLMI,inferoposterolateral myocardial infarction,1.0,,,MI,IMI,Myocardial Infarction,inferoposterolateral myocardial infarction,,,,
ISCAN,ischemic in anterior leads,1.0,,,STTC,ISCA,ischemic ST-T changes,in anterior leads,,,,
IPMI,inferoposterior myocardial infarction,1.0,,,MI,IMI,Myocardial Infarction,inferoposterior myocardial infarction,,,,
SEHYP,septal hypertrophy,1.0,,,HYP,SEHYP,Ventricular Hypertrophy,septal hypertrophy,,,,
INJIN,subendocardial injury in inferior leads,1.0,,,MI,IMI,ischemic ST-T changes compatible with subendocardial injury,in inferior leads,,,,
INJLA,subendocardial injury in lateral leads,1.0,,,MI,AMI,ischemic ST-T changes compatible with subendocardial injury,in lateral leads,,,,
PMI,posterior myocardial infarction,1.0,,,MI,PMI,Myocardial Infarction,posterior myocardial infarction,162,,,
3AVB,third degree AV block,1.0,,,CD,_AVB,"Sinus node dysfunction, atrial and AV-conduction defects",third degree AV block,88,MDC_ECG_RHY_AV_HEART_BLK_DEG_3,C111091,D3-32102
INJIL,subendocardial injury in inferolateral leads,1.0,,,MI,IMI,ischemic ST-T changes compatible with subendocardial injury,in inferolateral leads,,,,
2AVB,second degree AV block,1.0,,,CD,_AVB,"Sinus node dysfunction, atrial and AV-conduction defects",second degree AV block,,MDC_ECG_RHY_AV_HEART_BLK_DEG_2,C62016,R-F81AE
ABQRS,abnormal QRS,,1.0,,,,Normal/abnormal,abnormal QRS,,,,
PVC,ventricular premature complex,,1.0,,,,Statements related to ectopic rhythm abnormalities,ventricular premature complex (beat),60,MDC_ECG_BEAT_V_P_C,,
STD_,non-specific ST depression,,1.0,,,,Basic roots for coding ST-T changes and abnormalities,non-specific ST depression,502,,,F-38278
VCLVH,voltage criteria (QRS) for left ventricular hypertrophy,,1.0,,,,Ventricular Hypertrophy,voltage criteria (QRS) for left ventricular hypertrophy,,,,
QWAVE,Q waves present,,1.0,,,,Other QRS morphology descriptive statements,Q waves present,,,,
LOWT,low amplitude T-waves,,1.0,,,,other ST-T descriptive statements,low amplitude T-waves,366,,,
NT_,non-specific T-wave changes,,1.0,,,,Basic roots for coding ST-T changes and abnormalities,non-specific T-wave changes,,,,
PAC,atrial premature complex,,1.0,,,,Statements related to ectopic rhythm abnormalities,atrial premature complex (beat),30,MDC_ECG_BEAT_ATR_P_C,,
LPR,prolonged PR interval,,1.0,,,,Statements related to impulse formation (abnormalities),Prolonged PR interval,82,,,
INVT,inverted T-waves,,1.0,,,,other ST-T descriptive statements,inverted T-waves,367,,,
LVOLT,low QRS voltages in the frontal and horizontal leads,,1.0,,,,Other QRS morphology descriptive statements,low QRS voltages in the frontal and horizontal leads,,,,
HVOLT,high QRS voltage,,1.0,,,,Other QRS morphology descriptive statements,high QRS voltage,,,,
TAB_,T-wave abnormality,,1.0,,,,Basic roots for coding ST-T changes and abnormalities,T-wave abnormality,147,,,
STE_,non-specific ST elevation,,1.0,,,,Basic roots for coding ST-T changes and abnormalities,non-specific ST elevation,501,MDC_ECG_RHY_STELVATION,,F-38277
PRC(S),premature complex(es),,1.0,,,,Statements related to ectopic rhythm abnormalities,premature complex(es),,,,
SR,sinus rhythm,,,1.0,,,Statements related to impulse formation (abnormalities),sinus rhythm,20,MDC_ECG_RHY_SINUS_RHY,,
AFIB,atrial fibrillation,,,1.0,,,Statements related to impulse formation (abnormalities),atrial fibrillation,50,MDC_ECG_RHY_ATR_FIB,,D3-31520
STACH,sinus tachycardia,,,1.0,,,Statements related to impulse formation (abnormalities),sinus tachycardia,21,MDC_ECG_RHY_SINUS_TACHY,,
SARRH,sinus arrhythmia,,,1.0,,,Statements related to impulse formation (abnormalities),sinus arrhythmia,23,MDC_ECG_RHY_SINUS_ARRHY,,
SBRAD,sinus bradycardia,,,1.0,,,Statements related to impulse formation (abnormalities),sinus bradycardia,22,MDC_ECG_RHY_SINUS_BRADY,,
PACE,normal functioning artificial pacemaker,,,1.0,,,Pacemaker types and pacemaker function,normal functioning artificial pacemaker,,,,
SVARR,supraventricular arrhythmia,,,1.0,,,Statements related to impulse formation (abnormalities),supraventricular arrhythmia,,,,
BIGU,"bigeminal pattern (unknown origin, SV or Ventricular)",,,1.0,,,Statements related to ectopic rhythm abnormalities,"bigeminal pattern (unknown origin, SV or Ventricular)",,,,
AFLT,atrial flutter,,,1.0,,,Statements related to impulse formation (abnormalities),atrial flutter,51,MDC_ECG_RHY_ATR_FLUT,,
SVTAC,supraventricular tachycardia,,,1.0,,,Statements related to impulse formation (abnormalities),supraventricular tachycardia,55,MDC_ECG_RHY_SV_TACHY,,D3-31290
PSVT,paroxysmal supraventricular tachycardia,,,1.0,,,Statements related to impulse formation (abnormalities),paroxysmal supraventricular tachycardia,,MDC_ECG_RHY_SV_TACHY_PAROX,,
TRIGU,"trigeminal pattern (unknown origin, SV or Ventricular)",,,1.0,,,Statements related to ectopic rhythm abnormalities,"trigeminal pattern (unknown origin, SV or Ventricular)",,,,
"""

DATABASE_COLUMNS = (
    "ecg_id", "patient_id", "age", "sex", "height", "weight", "nurse", "site", "device", "recording_date", "report",
    "scp_codes", "heart_axis", "infarction_stadium1", "infarction_stadium2", "validated_by", "second_opinion",
    "initial_autogenerated_report", "validated_by_human", "baseline_drift", "static_noise", "burst_noise",
    "electrodes_problems", "extra_beats", "pacemaker", "strat_fold", "filename_lr", "filename_hr",
)
LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")  # spelled as PTB-XL's headers
GAIN = 1000.0  # adc units per mV, as in PTB-XL's headers: one storage step is 1 µV
DURATION_S = 10.0

# (scp_codes, synthetic condition for the waveform, report, heart_axis); ecg_id = the row it was copied from.
PROFILES: tuple[tuple[str, str, str, str], ...] = (
    ("{'NORM': 100.0, 'SR': 0.0}", "NSR", "sinus rhythm. normal ecg.", ""),  # 4293
    ("{'NORM': 80.0, 'SR': 0.0}", "NSR", "sinusrhythmus lagetyp normal sonst normales ekg", "MID"),  # 6717
    ("{'AFIB': 100.0}", "AF", "vorhofflimmern/-flattern lagetyp normal", "MID"),  # 10723
    ("{'NDT': 100.0, 'AFIB': 0.0}", "AF", "vorhofflimmern/-flattern lagetyp normal t abnorm", "MID"),  # 11546
    ("{'AFLT': 100.0, 'AFIB': 0.0}", "AF", "tachykardes vorhofflimmern lagetyp normal", "MID"),  # 15513
    ("{'NORM': 100.0, 'SBRAD': 0.0}", "SB", "sinus bradycardia. otherwise normal ecg.", ""),  # composed
    ("{'LAFB': 100.0, 'ISCAL': 80.0, 'LVH': 80.0, 'STACH': 0.0}", "STach",
     "sinus tachycardia. left axis deviation. left anterior fascicular block.", "LAD"),  # 3123
    ("{'CLBBB': 100.0, '1AVB': 100.0, 'SR': 0.0}", "BBB", "sinus rhythm. left bundle branch block.", ""),  # 730
    ("{'ASMI': 50.0, 'CRBBB': 100.0, 'ABQRS': 0.0, 'AFIB': 0.0}", "AF",
     "vorhofflimmern/-flattern ueberdrehter linkstyp qrs(t) abnorm", "ALAD"),  # 18841
    ("{'CRBBB': 100.0, 'SR': 0.0}", "BBB", "sinus rhythm. right bundle branch block.", ""),  # composed
    ("{'IRBBB': 100.0, 'LAFB': 100.0, 'PVC': 100.0, 'BIGU': 100.0}", "NSR",
     "premature ventricular contraction(s), bigeminy. left anterior fascicular block.", "LAD"),  # 6345
    ("{'IMI': 100.0, 'LAFB': 100.0, 'ABQRS': 0.0, 'SR': 0.0}", "NSR",
     "sinusrhythmus ueberdrehter linkstyp qrs(t) abnorm inferiorer infarkt wahrscheinlich alt", "ALAD"),  # 9226
    ("{'ASMI': 100.0, 'ABQRS': 0.0, 'SR': 0.0}", "NSR",
     "sinusrhythmus lagetyp normal qrs(t) abnorm anteriorer infarkt alter unbest.", "MID"),  # 21591
    ("{'LVH': 50.0, 'SR': 0.0}", "NSR", "sinusrhythmus lagetyp normal kammerhypertrophie lvh,moeglich", "MID"),  # 3655
    ("{'NST_': 100.0, 'AFIB': 0.0}", "AF", "tachykardes vorhofflimmern lagetyp normal pathologisch", "MID"),  # 17132
    ("{'LMI': 15.0, 'ABQRS': 0.0, 'SR': 0.0}", "NSR", "sinusrhythmus lagetyp normal qrs(t) abnormal", "MID"),  # 19337
    ("{'INJAS': 100.0, 'ASMI': 50.0, 'SR': 0.0}", "STE", "sinus rhythm. anteroseptal injury.", ""),  # composed
    ("{'ASMI': 100.0, 'STE_': 0.0, 'SR': 0.0}", "STE", "sinus rhythm. st elevation in v1-v3.", ""),  # composed
    ("{'1AVB': 100.0, 'LPR': 0.0, 'SR': 0.0}", "NSR", "sinus rhythm. first degree av block.", ""),  # composed
    ("{'ISC_': 100.0, 'LVH': 100.0, 'SR': 0.0}", "NSR", "sinus rhythm. lvh with strain.", ""),  # composed
    ("{'NORM': 100.0, 'SARRH': 0.0}", "NSR", "sinus arrhythmia. normal ecg.", ""),  # composed
)
DEVICES = ("CS-12", "AT-6     6", "CS100    3", "AT-6 C 5.5", "AT-60    3")
CORRUPTIONS = ("truncated_dat", "missing_hea", "missing_dat", "n_samples", "invalid_sample")


def record_names(ecg_id: int) -> tuple[str, str]:
    """(filename_lr, filename_hr) of an ecg_id, in PTB-XL's thousand-record folders."""
    folder = f"{ecg_id // 1000 * 1000:05d}"
    return f"records100/{folder}/{ecg_id:05d}_lr", f"records500/{folder}/{ecg_id:05d}_hr"


def plan(n_records: int = 40, seed: int = 0) -> list[dict[str, str]]:
    """The database rows (official columns, as strings) plus a private `_condition` key for the waveform."""
    rng = np.random.default_rng([seed, 20220])
    profile_of = rng.permutation(np.arange(n_records) % len(PROFILES))  # each profile once per len(PROFILES) rows
    rows, patient, fold_of = [], 0, {}
    for k in range(n_records):
        ecg_id = k + 1
        if k == 0 or rng.random() >= 0.2:  # one record in five is a follow-up ECG of the previous patient
            patient += 1
            fold_of[patient] = (patient - 1) % 10 + 1  # folds are drawn per patient, as in PTB-XL
        codes, condition, report, axis = PROFILES[int(profile_of[k])]
        lr, hr = record_names(ecg_id)
        age = "300.0" if patient == 3 else ("" if patient == 5 else f"{float(rng.integers(18, 90)):.1f}")
        rows.append({
            "ecg_id": str(ecg_id), "patient_id": f"{float(15000 + 7 * patient):.1f}", "age": age,
            "sex": str(int(rng.integers(0, 2))), "height": "" if k % 3 else "170.0", "weight": "" if k % 3 else "72.0",
            "nurse": f"{float(rng.integers(0, 8)):.1f}", "site": f"{float(rng.integers(0, 3)):.1f}",
            "device": DEVICES[k % len(DEVICES)],
            "recording_date": f"{1989 + k % 10}-0{1 + k % 9}-1{k % 10} 09:{k % 60:02d}:00",
            "report": report, "scp_codes": codes, "heart_axis": axis, "infarction_stadium1": "",
            "infarction_stadium2": "", "validated_by": "1.0" if k % 2 else "", "second_opinion": "False",
            "initial_autogenerated_report": "False", "validated_by_human": "True", "baseline_drift": "",
            "static_noise": "", "burst_noise": "", "electrodes_problems": "", "extra_beats": "", "pacemaker": "",
            "strat_fold": str(fold_of[patient]), "filename_lr": lr, "filename_hr": hr, "_condition": condition,
        })
    return rows


def record_signal(ecg_id: int, condition: str, seed: int, rate: int) -> np.ndarray:
    """The [12, T] float64 mV signal written for a record at 500 or 100 Hz (before 16-bit storage)."""
    signal, fs = generate_record(condition, "eu", seed=seed * 100_003 + ecg_id, duration_s=DURATION_S)
    assert fs == 500.0
    signal = np.asarray(signal, dtype=np.float64)
    return signal if rate == 500 else resample_poly(signal, 1, 5, axis=-1)


def _write_record(root: Path, name: str, signal: np.ndarray, rate: int) -> None:
    """One WFDB record as PTB-XL stores it: format 16, gain 1000/mV, baseline 0, units mV."""
    import wfdb

    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(path.name, fs=rate, units=["mV"] * 12, sig_name=list(LEADS), p_signal=signal.T,
                fmt=["16"] * 12, adc_gain=[GAIN] * 12, baseline=[0] * 12, write_dir=str(path.parent))


def _corrupt(base: Path, kind: str) -> None:
    """Damage one written record in the named way."""
    hea, dat = base.parent / (base.name + ".hea"), base.parent / (base.name + ".dat")
    if kind == "truncated_dat":
        with open(dat, "r+b") as f:
            f.truncate(dat.stat().st_size // 2 + 1)  # odd size: also cuts a sample in half
    elif kind == "missing_hea":
        hea.unlink()
    elif kind == "missing_dat":
        dat.unlink()
    elif kind == "n_samples":
        first, *rest = hea.read_text().splitlines(keepends=True)
        name, n_sig, fs, n = first.split()[:4]
        hea.write_text(f"{name} {n_sig} {fs} {int(n) + 100}\n" + "".join(rest))
    elif kind == "invalid_sample":
        data = np.fromfile(dat, dtype="<i2")
        data[37] = -32768  # WFDB's "no sample" value of format 16, read back as NaN
        data.tofile(dat)


def write_ptbxl(root: Path, n_records: int = 40, seed: int = 0, corrupt: dict | None = None) -> Path:
    """Write the fixture under root; corrupt maps a kind of CORRUPTIONS to the ecg_ids to damage (both rates)."""
    if set(corrupt or {}) - set(CORRUPTIONS):
        raise ValueError(f"unknown corruption(s) {sorted(set(corrupt) - set(CORRUPTIONS))}; known: {CORRUPTIONS}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # CRLF: the vendored copy is 9,792 characters for these 72 lines, i.e. the file was published with CRLF endings.
    (root / "scp_statements.csv").write_bytes(SCP_STATEMENTS_V103.replace("\n", "\r\n").encode("utf-8"))
    rows = plan(n_records, seed)
    with open(root / "ptbxl_database.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=DATABASE_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        ecg_id = int(row["ecg_id"])
        for rate, name in ((100, row["filename_lr"]), (500, row["filename_hr"])):
            _write_record(root, name, record_signal(ecg_id, row["_condition"], seed, rate), rate)
    return corrupt_ptbxl(root, corrupt or {})


def corrupt_ptbxl(root: Path, corrupt: dict) -> Path:
    """Damage written records in place; corrupt maps a kind of CORRUPTIONS to ecg_ids (both rates)."""
    unknown = set(corrupt) - set(CORRUPTIONS)
    if unknown:
        raise ValueError(f"unknown corruption(s) {sorted(unknown)}; known: {CORRUPTIONS}")
    for kind, ids in corrupt.items():
        for ecg_id in ids:
            for name in record_names(ecg_id):
                _corrupt(Path(root) / name, kind)
    return Path(root)
